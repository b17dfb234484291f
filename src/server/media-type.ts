/** RFC 9110 token characters, for the type and subtype of a media type. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+\/[!#$%&'*+.^_`|~0-9a-z-]+$/;

export interface MediaType {
  /** Lower-cased `type/subtype`. */
  type: string;
  /** Parameters by lower-cased name, quotes removed. */
  params: Record<string, string>;
}

/**
 * Parses a Content-Type header value (`image/png; charset=binary`, `image/png;`).
 * Returns null when there is none or its type/subtype is malformed.
 */
export function parseMediaType(header: string | undefined): MediaType | null {
  if (typeof header !== 'string') return null;
  const [head, ...rest] = header.split(';');
  const type = head.trim().toLowerCase();
  if (!TOKEN.test(type)) return null;
  const params: Record<string, string> = Object.create(null);
  for (const p of rest) {
    const eq = p.indexOf('=');
    if (eq === -1) continue;
    const name = p.slice(0, eq).trim().toLowerCase();
    let value = p.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    if (name) params[name] = value;
  }
  return { type, params };
}
