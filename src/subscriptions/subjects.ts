/**
 * Subject matching for subscriptions (SPEC §4): which messages a subscription receives.
 *
 * Subjects and patterns are dot-separated segments (`order.line.cancelled`). In a pattern:
 * - an exact segment matches the same segment, case-sensitively (`order` ≠ `Order`);
 * - `*` matches exactly one segment (`stock.*.x` matches `stock.full.x`, not `stock.x`
 *   or `stock.a.b.x`);
 * - a trailing `*` matches ONE OR MORE remaining segments, so `order.*` matches `order.created`
 *   and `order.line.cancelled` (but not `order` itself), and a lone `*` matches every subject.
 * Wildcards never match an empty segment, so a malformed subject like `order.` matches no `*`.
 */

/** Whether `subject` matches `pattern` under the rule above. */
export function matchesSubject(pattern: string, subject: string): boolean {
  const want = pattern.split(".");
  const have = subject.split(".");
  for (let i = 0; i < want.length; i++) {
    const segment = want[i];
    if (segment === "*" && i === want.length - 1) {
      const rest = have.slice(i);
      return rest.length >= 1 && rest.every((s) => s !== "");
    }
    const actual = have[i];
    if (actual === undefined) return false;
    if (segment === "*" ? actual === "" : segment !== actual) return false;
  }
  return want.length === have.length;
}

/** Whether any of `patterns` matches `subject`; an empty list matches nothing. */
export function matchesAny(patterns: readonly string[], subject: string): boolean {
  return patterns.some((pattern) => matchesSubject(pattern, subject));
}
