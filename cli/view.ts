/**
 * What following a task prints as states arrive: one JSON task per line
 * (--json), one line redrawn in place (a terminal), or one line per change
 * (a pipe or a file).
 */
import { progressLine } from './format.js';
import type { Task } from './types.js';

/** The part of a stream the views use (process.stdout, or a fake in tests). */
export interface Out {
  isTTY?: boolean;
  columns?: number;
  write(s: string): unknown;
}

export type ViewMode = 'json' | 'tty' | 'lines';

const CLEAR_LINE = '\r\x1b[2K';
const BAR_WIDTH = 20;

export class WatchView {
  private last = '';
  private drawn = false;

  constructor(
    private readonly out: Out,
    private readonly err: Out,
    readonly mode: ViewMode,
  ) {}

  static modeFor(out: Out, json: boolean): ViewMode {
    return json ? 'json' : out.isTTY ? 'tty' : 'lines';
  }

  /** A task state; printed only when what it shows differs from the last one. */
  task(t: Task): void {
    if (this.mode === 'json') {
      const s = JSON.stringify(t);
      if (s !== this.last) this.out.write(`${s}\n`);
      this.last = s;
      return;
    }
    if (this.mode === 'lines') {
      const s = progressLine(t);
      if (s !== this.last) this.out.write(`${s}\n`);
      this.last = s;
      return;
    }
    const width = Math.max(20, (this.out.columns || 80) - 1);
    const s = progressLine(t, { barWidth: BAR_WIDTH, width });
    if (s === this.last && this.drawn) return;
    this.out.write(`${CLEAR_LINE}${s}`);
    this.last = s;
    this.drawn = true;
  }

  /** A remark for the person watching, on stderr, without breaking the line drawn in place. */
  note(msg: string): void {
    if (this.mode === 'tty' && this.drawn) {
      this.out.write(CLEAR_LINE);
      this.err.write(`${msg}\n`);
      this.out.write(this.last);
      return;
    }
    this.err.write(`${msg}\n`);
  }

  /** Leaves the line drawn in place as it is and moves below it. */
  close(): void {
    if (this.mode === 'tty' && this.drawn) this.out.write('\n');
    this.drawn = false;
  }
}
