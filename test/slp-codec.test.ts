import { describe, expect, it } from 'vitest';
import { decode, decodeHeader, encode, Flags, Fn, type SlpMessage } from '../shared/slp/codec.js';
import { SlpDecodeError, SlpEncodeError } from '../shared/slp/errors.js';
import { badPacket, prng, samples, validPackets } from './helpers/slp-mutate.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string) => Buffer.from(s, 'ascii').toString('hex');

// SLP.md gives the captures with `<xid>` in place of the XID: any value goes
// there, and these tests use 0x9a3c to check it lands in the right two bytes.
const XID = '9a3c';
const capturedRequest = hex(`02 01 00002d 2000 000000 ${XID} 0002 ${ascii('en')} 0000 000c ${ascii('service:wokd')} 0007 ${ascii('DEFAULT')} 0000 0000`);
const capturedReply = hex(`02 02 00003e 0000 000000 ${XID} 0002 ${ascii('en')} 0000 0001 00 ffff 0024 ${ascii('service:wokd://kimchi-a.example:8001')} 00`);

function decodeError(b: Buffer): SlpDecodeError {
  try {
    decode(b);
  } catch (e) {
    if (e instanceof SlpDecodeError) return e;
    throw e;
  }
  throw new Error(`decoded without error: ${b.toString('hex')}`);
}

describe('SLPv2 codec: openSLP captures', () => {
  it('encodes `slptool findsrvs service:wokd` byte for byte (45 bytes)', () => {
    expect(capturedRequest.length).toBe(45);
    const m: SlpMessage = { fn: Fn.SrvRqst, xid: 0x9a3c, lang: 'en', flags: Flags.REQUEST_MCAST, prList: [], serviceType: 'service:wokd', scopes: ['DEFAULT'], predicate: '', spi: '' };
    expect(encode(m).toString('hex')).toBe(capturedRequest.toString('hex'));
    expect(decode(capturedRequest)).toEqual({ ...m, nextExtOffset: 0 });
  });
  it("decodes slpd's 62-byte reply", () => {
    expect(capturedReply.length).toBe(62);
    expect(decode(capturedReply)).toEqual({
      fn: Fn.SrvRply, xid: 0x9a3c, lang: 'en', flags: 0, nextExtOffset: 0,
      error: 0, urls: [{ url: 'service:wokd://kimchi-a.example:8001', lifetime: 65535 }],
    });
    expect(encode(decode(capturedReply)).equals(capturedReply)).toBe(true);
  });
});

describe('SLPv2 codec: round trips', () => {
  it.each(samples().map((m) => [Object.keys(Fn).find((k) => Fn[k as keyof typeof Fn] === m.fn), m] as const))('%s', (_name, m) => {
    const wire = encode(m);
    expect(wire.readUIntBE(2, 3)).toBe(wire.length);
    expect(decode(wire)).toEqual(m);
    expect(encode(decode(wire)).equals(wire)).toBe(true);
  });
  it('keeps UTF-8 and empty lists; the header carries every flag', () => {
    const m: SlpMessage = { fn: Fn.SrvTypeRply, xid: 0xffff, lang: 'de-CH', flags: Flags.OVERFLOW | Flags.FRESH, nextExtOffset: 0, error: 0, serviceTypes: ['service:größe'] };
    const d = decodeHeader(encode(m));
    expect(d).toMatchObject({ version: 2, fn: 10, flags: 0xc000, xid: 0xffff, lang: 'de-CH' });
    expect(decode(encode(m))).toEqual(m);
    expect(decode(encode({ ...m, serviceTypes: [] }))).toMatchObject({ serviceTypes: [] });
  });
  it('writes naming authority "all" as 0xFFFF', () => {
    const w = encode({ fn: Fn.SrvTypeRqst, xid: 1, lang: 'en', prList: [], namingAuthority: '*', scopes: ['DEFAULT'] });
    expect(w.subarray(18, 20).toString('hex')).toBe('ffff');
  });
  it('refuses to encode what the wire cannot carry', () => {
    expect(() => encode({ fn: Fn.SrvAck, xid: 1, lang: 'x'.repeat(70_000), error: 0 })).toThrow(SlpEncodeError);
    expect(() => encode({ fn: Fn.SrvRqst, xid: 1, lang: 'en', prList: [], serviceType: 'x'.repeat(70_000), scopes: [], predicate: '', spi: '' })).toThrow(SlpEncodeError);
  });
});

describe('SLPv2 codec: malformed input', () => {
  it.each([
    ['empty', Buffer.alloc(0), 'truncated'],
    ['SLPv1', hex('01 01 00002d 2000'), 'version'],
    ['header length larger than the datagram', hex('02 01 0000ff 0000 000000 0001 0002 656e'), 'length'],
    ['language tag longer than the message', hex('02 05 000010 0000 000000 0001 0009 656e'), 'truncated'],
    ['AttrRqst is not decoded', hex('02 06 000010 0000 000000 0001 0002 656e'), 'function'],
    ['unknown function id', hex('02 63 000010 0000 000000 0001 0002 656e'), 'function'],
    ['SrvAck without its error code', hex('02 05 000011 0000 000000 0001 0002 656e 00'), 'truncated'],
    ['SrvAck with a byte to spare', hex('02 05 000013 0000 000000 0001 0002 656e 0000 00'), 'trailing'],
    ['extension offset past the end', hex('02 05 000012 0000 0000ff 0001 0002 656e 0000'), 'extension'],
    ['service type that is not UTF-8', hex('02 0a 000016 0000 000000 0001 0002 656e 0000 0002 c328'), 'utf8'],
    ['SrvRply announcing 2 URLs, carrying 1', hex(capturedReply.toString('hex').replace('00000001', '00000002')), 'truncated'],
    ['URL entry auth block shorter than its fixed part', hex('02 02 00001e 0000 000000 0001 0002 656e 0000 0001 00 ffff 0000 01 0002 0004'), 'truncated'],
  ])('%s → %s', (_what, b, reason) => {
    expect(decodeError(b).reason).toBe(reason);
  });
  it('every truncation of every valid message is refused with SlpDecodeError', () => {
    for (const wire of [...validPackets(), capturedRequest, capturedReply]) {
      for (let n = 0; n < wire.length; n++) {
        decodeError(wire.subarray(0, n)); // the header's length no longer matches
        const cut = Buffer.from(wire.subarray(0, n));
        if (n >= 5) cut.writeUIntBE(n, 2, 3); // length fixed up: the body parsers must notice
        if (n >= 16) expect(decodeError(cut).reason).toMatch(/truncated|extension/);
      }
    }
  });
});

describe('SLPv2 codec: fuzz', () => {
  it('100,000 random and mutated datagrams give a message or SlpDecodeError, nothing else', () => {
    const SEED = 0x5e1f;
    const rand = prng(SEED);
    const valid = [...validPackets(), capturedRequest, capturedReply];
    const reasons: Record<string, number> = {};
    let decoded = 0;
    for (let i = 0; i < 100_000; i++) {
      const b = badPacket(rand, valid);
      try {
        const m = decode(b);
        decoded++;
        // What decodes must encode back to a valid message (the agents reply with such objects).
        decode(encode(m));
      } catch (e) {
        if (!(e instanceof SlpDecodeError)) throw new Error(`packet ${i} (${b.toString('hex')}) threw ${String(e)}`);
        reasons[e.reason] = (reasons[e.reason] ?? 0) + 1;
      }
    }
    console.log(`slp codec fuzz seed ${SEED}: ${decoded} decoded`, reasons);
    // The generator reaches every refusal, and some mutations still decode.
    for (const r of ['truncated', 'version', 'length', 'function', 'utf8', 'trailing', 'extension']) expect(reasons[r], r).toBeGreaterThan(0);
    expect(decoded).toBeGreaterThan(0);
  });
});
