/** Matches a lone surrogate: a high one not followed by a low one, or a low one not after a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const native = (String.prototype as { isWellFormed?: () => boolean }).isWellFormed;

/**
 * Whether `s` is well-formed UTF-16 (no lone surrogate), so that its UTF-8
 * encoding names it alone: `String.prototype.isWellFormed` where the runtime
 * has it (Node 20), else the same test by regular expression.
 */
export const isWellFormed: (s: string) => boolean =
  typeof native === 'function' ? (s) => native.call(s) : (s) => !LONE_SURROGATE.test(s);
