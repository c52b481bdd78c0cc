// The migrations page: who is signed in, the start form, the live task list
// and the detail panel, wired together.
import { call, showError } from './api.js';
import { createDetail } from './detail.js';
import { createForm, loadSuggestions } from './form.js';
import { createTaskList } from './tasks.js';

let role = 'viewer';
const canWrite = () => role === 'operator';

const detail = createDetail();
const list = createTaskList({
  canWrite,
  onSelect: (t) => void detail.show(t).catch((e) => showError(e.message)),
  onUpdate: (t) => detail.update(t),
});
const form = createForm({
  canWrite,
  onStarted: (t) => {
    list.update(t);
    list.select(t.id);
  },
});

async function whoAmI() {
  const { status, body } = await call('GET', '/session');
  if (status === 200) {
    role = body.role;
    document.getElementById('who').textContent = `${body.name} (${body.role})`;
  }
  form.setWritable(canWrite());
}

document.getElementById('logout').addEventListener('click', async () => {
  await call('DELETE', '/session').catch(() => undefined);
  location.assign('/login');
});

// The role first: it decides whether rows get a cancel button.
whoAmI()
  .then(() => Promise.all([list.reload(), loadSuggestions()]))
  .catch((e) => showError(e.message));
