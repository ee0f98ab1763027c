import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { fill } from "../../src/jobs/render.js";
import { judge, REJECTED_CAP, rejectedRows } from "../../src/jobs/verdict.js";
import { configError } from "../helpers/engine.js";

const PLAIN = `  - name: plain\n    subjects: [stock.full]\n    url: "file:///tmp/x"\n`;
const withJob = (job: string, more = "") =>
  `subscriptions:\n${PLAIN}  - name: oms\n    subjects: [stock.full]\n    url: "https://oms/batch"\n${more}    job:\n${job}`;
const POLL = `      poll: { url: "https://oms/x", done_when: 'response.status = "DONE"' }\n`;
describe("job: config", () => {
  it("a poll alone is a job; defaults filled in", () => {
    const sub = loadConfig(withJob(POLL), {}).config.subscriptions[1]!;
    expect(sub.job).toMatchObject({
      send: { headers: {} },
      poll: { method: "GET", interval: 5000, give_up_after: 3_600_000 },
    });
  });

  it("errors name the path of the broken expression", () => {
    expect(
      configError(withJob(`      poll: { url: "https://oms/x", done_when: 'response.status = ' }\n`)),
    ).toMatch(/subscriptions\[1\]\.job\.poll\.done_when: JSONata syntax error/);
    expect(configError(withJob(`      send: { url: "https://oms/{{open.id = }}" }\n${POLL}`))).toMatch(
      /subscriptions\[1\]\.job\.send\.url: JSONata syntax error/,
    );
    expect(configError(withJob(`      poll: { url: "https://oms/x" }\n`))).toMatch(
      /subscriptions\[1\]\.job\.poll\.done_when/,
    );
    expect(configError(withJob(`      open: { body: '{}' }\n${POLL}`))).toMatch(
      /subscriptions\[1\]\.job\.open\.url: required/,
    );
    expect(
      configError(withJob(`      open: { url: "https://oms/job" }\n${POLL}`, "    ordering: none\n")),
    ).toMatch(/subscriptions\[1\]\.job: open and close make one OMS job per run.*expected ordering: fifo/);
    expect(configError(withJob(POLL).replace("https://oms/batch", "file:///tmp/y"))).toMatch(
      /subscriptions\[1\]\.job: an import job talks HTTP/,
    );
    expect(
      configError(
        withJob(
          `      poll: { url: "https://oms/x", done_when: "true", interval: 1m, give_up_after: 10s }\n`,
        ),
      ),
    ).toMatch(/subscriptions\[1\]\.job\.poll\.give_up_after: must be at least poll.interval/);
  });
});

describe("job verdicts", () => {
  it("failed_when wins; JSONata truthiness", () => {
    expect(judge(true, true)).toBe("failed");
    expect(judge(undefined, true)).toBe("done");
    expect(judge(false, [])).toBe("pending");
    expect(judge([], [false, true])).toBe("done");
  });

  it("rejected rows: objects, plain values, capped with the total kept", () => {
    expect(rejectedRows([{ sku: "A", location: "S", message: "bad" }, "oops"]).rows).toEqual([
      { sku: "A", location: "S", reason: "bad" },
      { sku: null, location: null, reason: "oops" },
    ]);
    const many = rejectedRows(Array.from({ length: 250 }, (_, i) => ({ sku: `S${i}`, reason: "x" })));
    expect(many.rows).toHaveLength(REJECTED_CAP);
    expect(many.total).toBe(250);
    expect(rejectedRows(undefined)).toEqual({ rows: [], total: 0 });
  });

  it("url parts are URL-encoded, header parts are not", async () => {
    const input = { open: { id: "a/b c" } };
    expect(await fill("https://oms/job/{{open.id}}/x", input, true)).toBe("https://oms/job/a%2Fb%20c/x");
    expect(await fill("Bearer {{open.id}}", input, false)).toBe("Bearer a/b c");
  });
});

describe("docs/destinations.md job recipes", () => {
  const doc = readFileSync(new URL("../../docs/destinations.md", import.meta.url), "utf8");
  const section = doc.slice(doc.indexOf("## Import jobs"), doc.indexOf("## Performance"));
  const blocks = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);

  it("the Fluent recipe is a valid subscription", () => {
    const { config } = loadConfig(`subscriptions:\n${blocks[0]}`, { FLUENT_TOKEN: "t" });
    expect(config.subscriptions[0]!.job?.open?.url).toMatch(/\/api\/v4\.1\/job$/);
  });

  it("the commercetools job block is valid on the commercetools recipe", () => {
    const sub = `  - name: ct\n    subjects: [stock.full]\n    url: "https://import.example/p/inventories/import-containers/c"\n`;
    const { config } = loadConfig(`subscriptions:\n${sub}${blocks[1]}`, {});
    expect(config.subscriptions[0]!.job?.poll.errors).toMatch(/rejected/);
  });
});
