// An auditor's byte search, shared by the erasure tests.

/** Whether `bytes` hold `value` as UTF-8 or UTF-16 (either order), as
 *  given or lower case. */
export function holds(bytes, value) {
  const haystack = Buffer.from(bytes);
  return [value, value.toLowerCase()].some((text) =>
    [Buffer.from(text, 'utf8'), Buffer.from(text, 'utf16le'), Buffer.from(text, 'utf16le').swap16()]
      .some((form) => haystack.includes(form)));
}
