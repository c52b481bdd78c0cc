// The login page: trades a token for a session cookie (POST /session), then
// goes where the browser was sent from. No inline script: the page's
// Content-Security-Policy allows only scripts from this origin.

/**
 * Where to go after logging in: `raw` only if it is a path on this origin
 * ("/..." but not "//host" or "/\host", which browsers read as another
 * host), else "/". Keeps the login page from sending anyone elsewhere.
 */
export function safeNext(raw, origin) {
  if (typeof raw !== 'string' || !/^\/(?![/\\])/.test(raw) || /[\u0000-\u001f\u007f\\]/.test(raw)) return '/';
  try {
    const u = new URL(raw, origin);
    return u.origin === origin ? `${u.pathname}${u.search}${u.hash}` : '/';
  } catch {
    return '/';
  }
}

function say(text, error = false) {
  const m = document.getElementById('message');
  m.textContent = text;
  m.classList.toggle('error', error);
}

async function reasonOf(res) {
  try {
    return (await res.json()).reason ?? `the API answered ${res.status}`;
  } catch {
    return `the API answered ${res.status}`;
  }
}

if (typeof document !== 'undefined') {
  document.getElementById('login').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const input = document.getElementById('token');
    say('Logging in…');
    try {
      const res = await fetch('/session', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ token: input.value }),
      });
      if (res.status !== 201) return say(await reasonOf(res), true);
      input.value = '';
      const who = await res.json();
      say(`Logged in as ${who.name} (${who.role}).`);
      location.assign(safeNext(new URLSearchParams(location.search).get('next'), location.origin));
    } catch (e) {
      say(`The API cannot be reached: ${e.message}`, true);
    }
  });
  document.getElementById('logout').addEventListener('click', async () => {
    const res = await fetch('/session', { method: 'DELETE', credentials: 'same-origin' }).catch(() => null);
    say(res?.status === 204 ? 'Logged out.' : 'Could not log out.', res?.status !== 204);
  });
}
