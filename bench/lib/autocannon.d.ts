// autocannon 8 ships no types: the part of its API the inbound benchmark uses.
declare module "autocannon" {
  type Histogram = { average: number; p50: number; p90: number; p99: number; max: number; total: number };
  type Request = {
    method?: string;
    path?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    setupRequest?: (req: Request, context: Record<string, unknown>) => Request;
  };
  type Options = {
    url: string;
    connections?: number;
    duration?: number;
    amount?: number;
    timeout?: number;
    method?: string;
    requests?: Request[];
  };
  type Result = {
    latency: Histogram;
    requests: Histogram;
    duration: number;
    errors: number;
    timeouts: number;
    non2xx: number;
    "2xx": number;
    statusCodeStats: Record<string, { count: number }>;
  };
  function autocannon(opts: Options): Promise<Result> & { stop(): void };
  export default autocannon;
}
