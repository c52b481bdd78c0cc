/** Prints the configuration reference as a Markdown table (README.md embeds it; a test checks it). */
import { describeSchema } from '../shared/config.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  console.log('Usage: npx tsx bin/config-table.ts\n\nPrints every configuration key (from the schema) as a Markdown table: key, environment variable, default, meaning.');
  process.exit(0);
}

const esc = (s: string) => s.replaceAll('|', '\\|');
console.log('| key | environment variable | default | meaning |');
console.log('|---|---|---|---|');
for (const r of describeSchema()) console.log(`| \`${r.key}\` | \`${r.env}\` | \`${JSON.stringify(r.default)}\` | ${esc(r.doc)} |`);
