/**
 * SLP's own errors. Decoding a datagram from the network throws only
 * SlpDecodeError: the agents count and drop those, and anything else escaping
 * the decoder would be a bug (the fuzz tests hold it to that).
 */

/** Why a datagram was refused; stable strings that tests and counters can use. */
export type SlpDecodeReason =
  | 'truncated' // shorter than a field it announces
  | 'version' // not SLPv2
  | 'length' // header length differs from the datagram's
  | 'function' // function id this codec does not decode
  | 'utf8' // a string that is not UTF-8
  | 'extension' // next-extension offset pointing outside the datagram
  | 'trailing'; // bytes after the message and no extension to explain them

export class SlpDecodeError extends Error {
  override name = 'SlpDecodeError';
  constructor(
    readonly reason: SlpDecodeReason,
    detail: string,
  ) {
    super(`SLP decode error (${reason}): ${detail}`);
  }
}

/** Encoding refuses what the wire cannot carry (a string over 65535 bytes, a message over 16 MiB). */
export class SlpEncodeError extends Error {
  override name = 'SlpEncodeError';
}

/** A unicast query that got no answer in time. */
export class SlpTimeoutError extends Error {
  override name = 'SlpTimeoutError';
}

/** RFC 2608 error codes (the ones a DA-less agent can meet). */
export const SlpErrorCode = {
  OK: 0,
  LANGUAGE_NOT_SUPPORTED: 1,
  PARSE_ERROR: 2,
  INVALID_REGISTRATION: 3,
  SCOPE_NOT_SUPPORTED: 4,
  AUTHENTICATION_UNKNOWN: 5,
  AUTHENTICATION_ABSENT: 6,
  AUTHENTICATION_FAILED: 7,
  VER_NOT_SUPPORTED: 9,
  INTERNAL_ERROR: 10,
  DA_BUSY_NOW: 11,
  OPTION_NOT_UNDERSTOOD: 12,
  INVALID_UPDATE: 13,
  MSG_NOT_SUPPORTED: 14,
  REFRESH_REJECTED: 15,
} as const;
