/** Prints the configuration reference as a Markdown table (README.md embeds it; a test checks it). */
import { describeSchema } from '../shared/config.js';

const esc = (s: string) => s.replaceAll('|', '\\|');
console.log('| key | environment variable | default | meaning |');
console.log('|---|---|---|---|');
for (const r of describeSchema()) console.log(`| \`${r.key}\` | \`${r.env}\` | \`${JSON.stringify(r.default)}\` | ${esc(r.doc)} |`);
