import cron from "node-cron";
import { describe, expect, it } from "vitest";
import { nextFireTimes } from "../../src/scheduler/next.js";

const stock = (full: string, delta: string) =>
  ({ full: { schedule: full, retry: 300_000 }, delta: { schedule: delta } }) as Parameters<
    typeof nextFireTimes
  >[0];

describe("next fire times from the config alone (what `status` shows)", () => {
  it("gives each schedule's next fire, read in local time as the scheduler reads it", () => {
    const before = Date.now();
    const { full, delta } = nextFireTimes(stock("0 0 1 1 *", "*/10 * * * * *"));
    // The full: next New Year's midnight, local time.
    const year = new Date(before).getFullYear();
    const newYear = new Date(year + 1, 0, 1).getTime();
    expect(full?.getTime()).toBe(newYear);
    // The delta: the next whole ten seconds, within ten seconds of now.
    expect(delta).toBeInstanceOf(Date);
    expect(delta!.getTime() % 10_000).toBe(0);
    expect(delta!.getTime()).toBeGreaterThan(before);
    expect(delta!.getTime()).toBeLessThanOrEqual(Date.now() + 10_000);
  });

  it("leaves no task behind: it only reads the expressions", () => {
    const tasks = cron.getTasks().size;
    nextFireTimes(stock("0 * * * *", "* * * * *"));
    nextFireTimes(stock("0 * * * *", "* * * * *"));
    expect(cron.getTasks().size).toBe(tasks);
  });
});
