/**
 * `{{field}}` in a subscription's url and header values, filled at send time from the fields the
 * message was enqueued with (stored under FIELDS_HEADER, never sent) and its delivery's sequence.
 * Values are URL-encoded (a sku "A/B" must not become a path segment). Pure.
 */
export const FIELDS_HEADER = "stock-sync-fields";

const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g;

/** Whether `text` has a `{{field}}` to fill (a url without one names the same target every time). */
export const hasPlaceholders = (text: string): boolean => text.includes("{{");

export function fillPlaceholders(text: string, fields: Readonly<Record<string, unknown>>): string {
  if (!hasPlaceholders(text)) return text;
  return text.replace(PLACEHOLDER, (_, name: string) => encodeURIComponent(String(fields[name] ?? "")));
}

/**
 * The url and headers of one request: placeholders filled, the stored fields header removed.
 * Messages enqueued without fields (no placeholders) pass through unchanged.
 */
export function resolveTarget(
  url: string,
  subHeaders: Readonly<Record<string, string>>,
  messageHeaders: Readonly<Record<string, string>>,
  sequence: number | null,
): { url: string; subHeaders: Record<string, string>; messageHeaders: Record<string, string> } {
  const stored = messageHeaders[FIELDS_HEADER];
  if (stored === undefined)
    return { url, subHeaders: { ...subHeaders }, messageHeaders: { ...messageHeaders } };
  const { [FIELDS_HEADER]: _, ...rest } = messageHeaders;
  const fields = {
    ...(JSON.parse(stored) as Record<string, unknown>),
    ...(sequence !== null ? { sequence } : {}),
  };
  const filled = Object.fromEntries(
    Object.entries(subHeaders).map(([k, v]) => [k, fillPlaceholders(v, fields)]),
  );
  return { url: fillPlaceholders(url, fields), subHeaders: filled, messageHeaders: rest };
}
