/** A small server-sent-events reader over fetch, for tests. */
import { TOKENS } from './service.js';
export interface SseEvent {
  event: string;
  data: string;
}

/** Reads events until the server ends the stream (or `until` says stop), returning them all. */
export async function readEvents(url: string, onEvent?: (e: SseEvent) => void, timeoutMs = 120_000): Promise<SseEvent[]> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  const res = await fetch(url, { headers: { accept: 'text/event-stream', authorization: `Bearer ${TOKENS.operator}` }, signal: ac.signal });
  if (res.status !== 200 || !res.body) throw new Error(`event stream answered ${res.status}`);
  const out: SseEvent[] = [];
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for await (const chunk of res.body) {
      buf += decoder.decode(chunk as Uint8Array, { stream: true });
      let i: number;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) event = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
        }
        if (!data.length) continue; // comments and heartbeats
        const e = { event, data: data.join('\n') };
        out.push(e);
        onEvent?.(e);
      }
    }
  } finally {
    clearTimeout(timer);
  }
  return out;
}
