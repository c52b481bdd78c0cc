/**
 * Seeded generator of bad SLP datagrams, shared by the codec test (decoder
 * alone) and the agents test (datagrams fired at a real service agent).
 * Mutations of valid packets get past the version and length checks often
 * (the length field is fixed up half the time), so the body parsers see
 * lying string lengths, counts and auth blocks, not just early rejections.
 */
import { encode, Flags, Fn, type SlpMessage } from '../../shared/slp/codec.js';

/** mulberry32: small, fast, and the same sequence for the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const auth = Buffer.from([0x00, 0x02, 0x00, 0x0c, 1, 2, 3, 4, 0x00, 0x00, 9, 9]);

/** One valid message of every type this codec speaks. */
export function samples(): SlpMessage[] {
  const h = { xid: 0x1234, lang: 'en', flags: 0, nextExtOffset: 0 };
  return [
    { fn: Fn.SrvRqst, ...h, flags: Flags.REQUEST_MCAST, prList: ['10.0.0.1', '10.0.0.2'], serviceType: 'service:wokd', scopes: ['DEFAULT'], predicate: '', spi: '' },
    { fn: Fn.SrvRply, ...h, error: 0, urls: [{ url: 'service:wokd://a.example:8001', lifetime: 65535 }, { url: 'service:wokd://b.example:8001', lifetime: 300, authBlocks: [auth] }] },
    { fn: Fn.SrvReg, ...h, flags: Flags.FRESH, url: { url: 'service:wokd://a.example:8001', lifetime: 65535 }, serviceType: 'service:wokd', scopes: ['DEFAULT'], attrs: '(x=1)', attrAuthBlocks: [auth] },
    { fn: Fn.SrvDeReg, ...h, scopes: ['DEFAULT'], url: { url: 'service:wokd://a.example:8001', lifetime: 0 }, tags: '' },
    { fn: Fn.SrvAck, ...h, error: 4 },
    { fn: Fn.SrvTypeRqst, ...h, flags: Flags.REQUEST_MCAST, prList: [], namingAuthority: '*', scopes: ['DEFAULT', 'lab'] },
    { fn: Fn.SrvTypeRqst, ...h, prList: ['10.0.0.9'], namingAuthority: 'kimchi', scopes: [] },
    { fn: Fn.SrvTypeRply, ...h, error: 0, serviceTypes: ['service:wokd', 'service:kvm-migrate'] },
    { fn: Fn.SAAdvert, ...h, url: 'service:service-agent://10.0.0.2', scopes: ['DEFAULT'], attrs: '', authBlocks: [auth] },
  ];
}

/** A datagram: random bytes, or a valid one mutated (bytes changed, cut, grown), length fixed up or not. */
export function badPacket(rand: () => number, valid: Buffer[]): Buffer {
  const int = (n: number) => Math.floor(rand() * n);
  if (rand() < 0.25) {
    const b = Buffer.alloc(int(80));
    for (let i = 0; i < b.length; i++) b[i] = int(256);
    if (b.length > 0 && rand() < 0.5) b[0] = 2; // past the version check
    return b;
  }
  let b = Buffer.from(valid[int(valid.length)]!);
  const edits = 1 + int(4);
  for (let e = 0; e < edits; e++) {
    const op = int(5);
    if (op === 0 && b.length > 0) b[int(b.length)] = int(256);
    else if (op === 1 && b.length > 0) b[int(b.length)] = [0, 0xff, 0x7f, 0x80, 1][int(5)]!;
    else if (op === 2) b = b.subarray(0, int(b.length + 1));
    else if (op === 3) b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + int(8) }, () => int(256)))]);
    else if (b.length > 16) b.writeUInt16BE(int(0x10000), 14 + int(b.length - 16)); // a lying 16-bit length or count
  }
  if (b.length >= 5 && rand() < 0.5) b.writeUIntBE(b.length, 2, 3);
  return b;
}

export function validPackets(): Buffer[] {
  return samples().map(encode);
}
