import { DeqError } from '../errors.js';

// Lone surrogates cannot be encoded as UTF-8; a JS string can still hold them.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * The one text validator: a string, or UTF-8 bytes decoded strictly. Throws
 * DEQ_ERR_TEXT_INVALID (empty, lone surrogate, invalid UTF-8) or DEQ_ERR_TEXT_TOO_LONG.
 */
export function validateText(input: string | Uint8Array, maxChars: number): string {
  let text: string;
  if (typeof input === 'string') {
    text = input;
    if (LONE_SURROGATE.test(text)) throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text contains a lone surrogate (not valid Unicode)');
  } else if (input instanceof Uint8Array) {
    if (input.length > 4 * maxChars) throw new DeqError('DEQ_ERR_TEXT_TOO_LONG', `text is ${input.length} bytes; the limit is ${maxChars} characters`);
    try {
      text = STRICT_UTF8.decode(input);
    } catch {
      throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text is not valid UTF-8');
    }
  } else {
    throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text must be a string or UTF-8 bytes');
  }
  if (text.length > maxChars) throw new DeqError('DEQ_ERR_TEXT_TOO_LONG', `text is ${text.length} characters; the limit is ${maxChars}`);
  if (text.trim() === '') throw new DeqError('DEQ_ERR_TEXT_INVALID', 'text is empty');
  return text;
}
