// Talking to the API from the page: same origin, the session cookie for
// credentials, JSON both ways. An expired session goes back to the login page.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.reason ?? `the API answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Answers {status, body, headers}; only 401 and network failures throw. */
export async function call(method, path, body, headers = {}) {
  const init = { method, credentials: 'same-origin', headers: { accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) {
    location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    throw new ApiError(401, { reason: 'signed out' });
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = { reason: text.slice(0, 200) };
  }
  return { status: res.status, body: json, headers: res.headers };
}

/** The URL of the next page from an RFC 8288 Link header, if any. */
export function nextLink(headers) {
  const link = headers.get('link') ?? '';
  const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(link);
  return m ? m[1] : null;
}

export function showError(message) {
  const el = document.getElementById('error');
  el.textContent = message;
  el.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (el.hidden = true), 6000);
}

/** Small DOM helper: never innerHTML, since names and messages come from users. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null) node.append(c instanceof Node ? c : String(c));
  return node;
}

export const mib = (bytes) => (bytes === undefined || bytes === null ? '–' : `${(bytes / 1048576).toFixed(bytes < 10 * 1048576 ? 1 : 0)} MiB`);
export const when = (iso) => (iso ? new Date(iso).toLocaleTimeString() : '–');
export function seconds(ms) {
  if (ms === undefined || ms === null) return '–';
  return ms < 10_000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms / 1000)} s`;
}
