/** The harness's command line, pure (test/bench-report.test.ts). */

export interface Args {
  quick: boolean;
  only: string[] | null;
}

export function parseArgs(argv: string[], known: readonly string[]): Args | { help: true } | { error: string } {
  const out: Args = { quick: false, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return { help: true };
    if (a === '--quick') out.quick = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!v) return { error: '--only needs benchmark names' };
      const names = v.split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = names.filter((n) => !known.includes(n));
      if (unknown.length) return { error: `no benchmark named ${unknown.join(', ')}; there are: ${known.join(', ')}` };
      out.only = [...(out.only ?? []), ...names];
    } else return { error: `unknown argument ${a}` };
  }
  return out;
}
