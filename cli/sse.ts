/**
 * A text/event-stream parser (the WHATWG "server-sent events" rules), fed
 * with text as it arrives: lines end in CRLF, LF or CR; an empty line
 * dispatches the event; ':' starts a comment; 'data' lines join with '\n';
 * an event not closed by an empty line when the stream ends is dropped.
 */

export interface SseEvent {
  type: string;
  data: string;
  id: string;
}

export class SseParser {
  private buffer = '';
  private started = false;
  /** The previous chunk ended in CR: an LF at the start of this one belongs to it. */
  private pendingCr = false;
  private type = '';
  private data: string[] = [];
  private lastId = '';
  /** Last 'retry' the server asked for, in ms. */
  retryMs: number | undefined;

  /** Feeds decoded text; returns the events it completed. */
  push(text: string): SseEvent[] {
    if (!text.length) return [];
    if (!this.started) {
      this.started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCr && text.startsWith('\n')) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== '\n' && ch !== '\r') continue;
      const line = this.buffer.slice(start, i);
      if (ch === '\r') {
        if (i + 1 < this.buffer.length) {
          if (this.buffer[i + 1] === '\n') i++;
        } else {
          this.pendingCr = true;
        }
      }
      start = i + 1;
      const ev = this.line(line);
      if (ev) events.push(ev);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** The stream ended: an unterminated event is dropped, as the standard says. */
  end(): SseEvent[] {
    this.buffer = '';
    this.data = [];
    this.type = '';
    return [];
  }

  private line(line: string): SseEvent | undefined {
    if (line === '') {
      if (!this.data.length) {
        this.type = '';
        return undefined;
      }
      const ev = { type: this.type || 'message', data: this.data.join('\n'), id: this.lastId };
      this.type = '';
      this.data = [];
      return ev;
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
    return undefined;
  }
}

/**
 * Reads a fetch body as server-sent events, calling onEvent for each until
 * the stream ends or onEvent returns true (done). Byte chunks may split
 * UTF-8 characters anywhere; the decoder keeps them whole.
 */
export async function readEvents(body: ReadableStream<Uint8Array>, onEvent: (ev: SseEvent) => boolean | void, onBytes?: () => void): Promise<'done' | 'ended'> {
  const reader = body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SseParser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        parser.push(decoder.decode());
        parser.end();
        return 'ended';
      }
      onBytes?.();
      for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
        if (onEvent(ev) === true) return 'done';
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
