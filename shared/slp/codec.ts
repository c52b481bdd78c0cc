/**
 * SLPv2 (RFC 2608) messages a DA-less network needs, as typed objects, and
 * their wire form. Pure: no sockets here (agents live in agent.ts).
 *
 * Decoding takes untrusted datagrams. Every read is bounds-checked by the
 * Reader below before Buffer is touched, so a short or lying packet gives a
 * SlpDecodeError with a reason, never a RangeError.
 */
import { SlpDecodeError, SlpEncodeError } from './errors.js';

export const SLP_VERSION = 2;
export const SLP_PORT = 427;
export const SLP_MULTICAST_GROUP = '239.255.255.253';
/** openSLP's net.slp.MTU: the largest datagram it sends, and so the limit on a growing PR list. */
export const SLP_MTU = 1400;

export const Fn = {
  SrvRqst: 1,
  SrvRply: 2,
  SrvReg: 3,
  SrvDeReg: 4,
  SrvAck: 5,
  AttrRqst: 6,
  AttrRply: 7,
  DAAdvert: 8,
  SrvTypeRqst: 9,
  SrvTypeRply: 10,
  SAAdvert: 11,
} as const;

export const Flags = { OVERFLOW: 0x8000, FRESH: 0x4000, REQUEST_MCAST: 0x2000 } as const;

/** Naming authority 0xFFFF on the wire: "every naming authority". */
export const ALL_AUTHORITIES = '*' as const;

export interface UrlEntry {
  url: string;
  /** Seconds; 65535 is "permanent" for openSLP. */
  lifetime: number;
  /** Authentication blocks, kept whole (this project does not do SLP security). */
  authBlocks?: Buffer[];
}

interface Head {
  xid: number;
  /** Language tag, `en` for everything openSLP and Kimchi send. */
  lang: string;
  /** Header flag bits (Flags.*); absent = 0. */
  flags?: number;
  /** Offset of the first extension, as decoded; encode always writes 0 (we send no extensions). */
  nextExtOffset?: number;
}

export interface SrvRqst extends Head { fn: typeof Fn.SrvRqst; prList: string[]; serviceType: string; scopes: string[]; predicate: string; spi: string }
export interface SrvRply extends Head { fn: typeof Fn.SrvRply; error: number; urls: UrlEntry[] }
export interface SrvReg extends Head { fn: typeof Fn.SrvReg; url: UrlEntry; serviceType: string; scopes: string[]; attrs: string; attrAuthBlocks?: Buffer[] }
export interface SrvDeReg extends Head { fn: typeof Fn.SrvDeReg; scopes: string[]; url: UrlEntry; tags: string }
export interface SrvAck extends Head { fn: typeof Fn.SrvAck; error: number }
export interface SrvTypeRqst extends Head { fn: typeof Fn.SrvTypeRqst; prList: string[]; namingAuthority: string; scopes: string[] }
export interface SrvTypeRply extends Head { fn: typeof Fn.SrvTypeRply; error: number; serviceTypes: string[] }
export interface SAAdvert extends Head { fn: typeof Fn.SAAdvert; url: string; scopes: string[]; attrs: string; authBlocks?: Buffer[] }

export type SlpMessage = SrvRqst | SrvRply | SrvReg | SrvDeReg | SrvAck | SrvTypeRqst | SrvTypeRply | SAAdvert;

// ---------------------------------------------------------------- lists

/** SLP lists are comma separated; an empty string is the empty list. */
export function splitList(s: string): string[] {
  return s === '' ? [] : s.split(',').map((x) => x.trim());
}
const joinList = (l: string[]): string => l.join(',');

// ---------------------------------------------------------------- encoding

class Writer {
  private parts: Buffer[] = [];
  u8(v: number): this {
    this.parts.push(Buffer.from([v & 0xff]));
    return this;
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v & 0xffff);
    this.parts.push(b);
    return this;
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, 'utf8');
    if (b.length > 0xfffe) throw new SlpEncodeError(`string of ${b.length} bytes does not fit an SLP string`);
    return this.u16(b.length).bytes(b);
  }
  authBlocks(blocks: Buffer[] | undefined): this {
    const l = blocks ?? [];
    if (l.length > 255) throw new SlpEncodeError('at most 255 authentication blocks');
    this.u8(l.length);
    for (const b of l) this.bytes(b);
    return this;
  }
  urlEntry(e: UrlEntry): this {
    return this.u8(0).u16(e.lifetime).str(e.url).authBlocks(e.authBlocks);
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function encodeBody(m: SlpMessage): Buffer {
  const w = new Writer();
  switch (m.fn) {
    case Fn.SrvRqst:
      return w.str(joinList(m.prList)).str(m.serviceType).str(joinList(m.scopes)).str(m.predicate).str(m.spi).done();
    case Fn.SrvRply:
      if (m.urls.length > 0xffff) throw new SlpEncodeError('too many URL entries');
      w.u16(m.error).u16(m.urls.length);
      for (const u of m.urls) w.urlEntry(u);
      return w.done();
    case Fn.SrvReg:
      return w.urlEntry(m.url).str(m.serviceType).str(joinList(m.scopes)).str(m.attrs).authBlocks(m.attrAuthBlocks).done();
    case Fn.SrvDeReg:
      return w.str(joinList(m.scopes)).urlEntry(m.url).str(m.tags).done();
    case Fn.SrvAck:
      return w.u16(m.error).done();
    case Fn.SrvTypeRqst:
      w.str(joinList(m.prList));
      if (m.namingAuthority === ALL_AUTHORITIES) w.u16(0xffff);
      else w.str(m.namingAuthority);
      return w.str(joinList(m.scopes)).done();
    case Fn.SrvTypeRply:
      return w.u16(m.error).str(joinList(m.serviceTypes)).done();
    case Fn.SAAdvert:
      return w.str(m.url).str(joinList(m.scopes)).str(m.attrs).authBlocks(m.authBlocks).done();
  }
}

export function encode(m: SlpMessage): Buffer {
  const body = encodeBody(m);
  const lang = Buffer.from(m.lang, 'utf8');
  if (lang.length > 0xffff) throw new SlpEncodeError('language tag too long');
  const total = 14 + lang.length + body.length;
  if (total > 0xffffff) throw new SlpEncodeError(`message of ${total} bytes is over SLP's 3-byte length`);
  const h = Buffer.alloc(14);
  h.writeUInt8(SLP_VERSION, 0);
  h.writeUInt8(m.fn, 1);
  h.writeUIntBE(total, 2, 3);
  h.writeUInt16BE((m.flags ?? 0) & 0xffff, 5);
  h.writeUIntBE(0, 7, 3); // next-extension offset: we send no extensions
  h.writeUInt16BE(m.xid & 0xffff, 10);
  h.writeUInt16BE(lang.length, 12);
  return Buffer.concat([h, lang, body]);
}

// ---------------------------------------------------------------- decoding

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bounds-checked reads over [pos, end). */
class Reader {
  constructor(
    private readonly b: Buffer,
    public pos: number,
    private readonly end: number,
  ) {}
  private need(n: number, what: string): void {
    if (this.pos + n > this.end) throw new SlpDecodeError('truncated', `${what} needs ${n} bytes at offset ${this.pos}, message ends at ${this.end}`);
  }
  u8(what: string): number {
    this.need(1, what);
    return this.b[this.pos++]!;
  }
  u16(what: string): number {
    this.need(2, what);
    const v = (this.b[this.pos]! << 8) | this.b[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  bytes(n: number, what: string): Buffer {
    this.need(n, what);
    const out = Buffer.from(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out;
  }
  strOfLength(n: number, what: string): string {
    const raw = this.bytes(n, what);
    try {
      return utf8.decode(raw);
    } catch {
      throw new SlpDecodeError('utf8', `${what} is not UTF-8`);
    }
  }
  str(what: string): string {
    return this.strOfLength(this.u16(`${what} length`), what);
  }
  list(what: string): string[] {
    return splitList(this.str(what));
  }
  authBlocks(what: string): Buffer[] | undefined {
    const n = this.u8(`${what} auth block count`);
    if (n === 0) return undefined;
    const blocks: Buffer[] = [];
    for (let i = 0; i < n; i++) {
      // Block structure descriptor (2), then the block's whole length (2), which covers the descriptor.
      this.need(4, `${what} auth block ${i}`);
      const len = (this.b[this.pos + 2]! << 8) | this.b[this.pos + 3]!;
      if (len < 10) throw new SlpDecodeError('truncated', `${what} auth block ${i} says it is ${len} bytes, less than its fixed part`);
      blocks.push(this.bytes(len, `${what} auth block ${i}`));
    }
    return blocks;
  }
  urlEntry(what: string): UrlEntry {
    this.u8(`${what} reserved`);
    const lifetime = this.u16(`${what} lifetime`);
    const url = this.str(`${what} URL`);
    const authBlocks = this.authBlocks(what);
    return authBlocks ? { url, lifetime, authBlocks } : { url, lifetime };
  }
}

export interface SlpHeader {
  version: number;
  fn: number;
  length: number;
  flags: number;
  nextExtOffset: number;
  xid: number;
  lang: string;
  /** Where the body starts. */
  bodyOffset: number;
}

/** The header alone, for agents that look at the function id before deciding to decode more. */
export function decodeHeader(b: Buffer): SlpHeader {
  if (!Buffer.isBuffer(b)) throw new SlpDecodeError('truncated', 'not a buffer');
  const r = new Reader(b, 0, b.length);
  const version = r.u8('version');
  if (version !== SLP_VERSION) throw new SlpDecodeError('version', `version ${version}, only 2 is spoken`);
  const fn = r.u8('function id');
  const length = (r.u8('length') << 16) | r.u16('length');
  if (length !== b.length) throw new SlpDecodeError('length', `header says ${length} bytes, the datagram has ${b.length}`);
  const flags = r.u16('flags');
  const nextExtOffset = (r.u8('next extension') << 16) | r.u16('next extension');
  const xid = r.u16('XID');
  const lang = r.str('language tag');
  if (nextExtOffset !== 0 && (nextExtOffset < r.pos || nextExtOffset + 5 > length)) {
    throw new SlpDecodeError('extension', `next-extension offset ${nextExtOffset} outside the message (${r.pos}..${length})`);
  }
  return { version, fn, length, flags, nextExtOffset, xid, lang, bodyOffset: r.pos };
}

/** Decodes one datagram. Throws SlpDecodeError, and only that, for anything it cannot take. */
export function decode(b: Buffer): SlpMessage {
  const h = decodeHeader(b);
  // Extensions (none we understand) start where the body must end.
  const end = h.nextExtOffset !== 0 ? h.nextExtOffset : h.length;
  const r = new Reader(b, h.bodyOffset, end);
  const head: Head = { xid: h.xid, lang: h.lang, flags: h.flags, nextExtOffset: h.nextExtOffset };
  let m: SlpMessage;
  switch (h.fn) {
    case Fn.SrvRqst:
      m = { fn: Fn.SrvRqst, ...head, prList: r.list('PR list'), serviceType: r.str('service type'), scopes: r.list('scope list'), predicate: r.str('predicate'), spi: r.str('SPI') };
      break;
    case Fn.SrvRply: {
      const error = r.u16('error code');
      const count = r.u16('URL count');
      const urls: UrlEntry[] = [];
      for (let i = 0; i < count; i++) urls.push(r.urlEntry(`URL entry ${i}`));
      m = { fn: Fn.SrvRply, ...head, error, urls };
      break;
    }
    case Fn.SrvReg: {
      const url = r.urlEntry('URL entry');
      const serviceType = r.str('service type');
      const scopes = r.list('scope list');
      const attrs = r.str('attribute list');
      const attrAuthBlocks = r.authBlocks('attribute');
      m = { fn: Fn.SrvReg, ...head, url, serviceType, scopes, attrs, ...(attrAuthBlocks ? { attrAuthBlocks } : {}) };
      break;
    }
    case Fn.SrvDeReg:
      m = { fn: Fn.SrvDeReg, ...head, scopes: r.list('scope list'), url: r.urlEntry('URL entry'), tags: r.str('tag list') };
      break;
    case Fn.SrvAck:
      m = { fn: Fn.SrvAck, ...head, error: r.u16('error code') };
      break;
    case Fn.SrvTypeRqst: {
      const prList = r.list('PR list');
      const naLen = r.u16('naming authority length');
      const namingAuthority = naLen === 0xffff ? ALL_AUTHORITIES : r.strOfLength(naLen, 'naming authority');
      m = { fn: Fn.SrvTypeRqst, ...head, prList, namingAuthority, scopes: r.list('scope list') };
      break;
    }
    case Fn.SrvTypeRply:
      m = { fn: Fn.SrvTypeRply, ...head, error: r.u16('error code'), serviceTypes: r.list('service type list') };
      break;
    case Fn.SAAdvert: {
      const url = r.str('URL');
      const scopes = r.list('scope list');
      const attrs = r.str('attribute list');
      const authBlocks = r.authBlocks('SAAdvert');
      m = { fn: Fn.SAAdvert, ...head, url, scopes, attrs, ...(authBlocks ? { authBlocks } : {}) };
      break;
    }
    default:
      throw new SlpDecodeError('function', `function id ${h.fn} is not decoded here`);
  }
  if (r.pos !== end) throw new SlpDecodeError('trailing', `${end - r.pos} bytes after the message body`);
  return m;
}
