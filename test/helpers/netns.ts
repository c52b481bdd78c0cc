/**
 * Two network namespaces made for one test run, joined by a veth pair, with
 * private addresses and a multicast route inside them only. Traffic never
 * leaves them; `destroy` removes both (and the pair with them). Needs root.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface NetPair {
  nsA: string;
  nsB: string;
  /** A's address, and B's addresses (B has `bCount` of them on its end). */
  a: string;
  b: string[];
  /** Runs `ip ...` inside a namespace. */
  ipIn(ns: string, ...args: string[]): void;
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });

export function makeNetPair(prefix: string, bCount = 1): NetPair {
  const tag = randomBytes(3).toString('hex');
  const nsA = `${prefix}-a-${tag}`;
  const nsB = `${prefix}-b-${tag}`;
  const vethA = `va${tag}`;
  const vethB = `vb${tag}`;
  const net = `10.231.${randomBytes(1)[0]!}`;
  const a = `${net}.1`;
  const b = Array.from({ length: bCount }, (_, i) => `${net}.${i + 2}`);
  const ipIn = (ns: string, ...args: string[]) => void ip('netns', 'exec', ns, 'ip', ...args);
  const destroy = () => {
    for (const ns of [nsA, nsB]) {
      try {
        ip('netns', 'del', ns); // takes the veth pair with it
      } catch {
        /* not created */
      }
    }
  };
  try {
    ip('netns', 'add', nsA);
    ip('netns', 'add', nsB);
    ip('link', 'add', vethA, 'netns', nsA, 'type', 'veth', 'peer', 'name', vethB, 'netns', nsB);
    ipIn(nsA, 'addr', 'add', `${a}/24`, 'dev', vethA);
    for (const x of b) ipIn(nsB, 'addr', 'add', `${x}/24`, 'dev', vethB);
    for (const [ns, dev] of [[nsA, vethA], [nsB, vethB]] as const) {
      ipIn(ns, 'link', 'set', 'lo', 'up');
      ipIn(ns, 'link', 'set', dev, 'up');
      ipIn(ns, 'route', 'add', '224.0.0.0/4', 'dev', dev);
    }
  } catch (e) {
    destroy();
    throw e;
  }
  return { nsA, nsB, a, b, ipIn, destroy };
}
