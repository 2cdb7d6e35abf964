// A generator's request handler on web-standard Request/Response (Deno.serve, the edge runtime, Node):
// parse the body, authorize (SPEC section 6), refuse a repeated Idempotency-Key, answer 202 at once and
// run the generation in the background.
import { AuthorityError } from "./authority.ts";
import type { Principal, Verifier } from "./authority.ts";

export const MAX_BODY_BYTES = 1 << 20;

export type Work = (principal: Principal, body: Record<string, unknown>) => Promise<void>;

export interface HandlerOptions {
  verifier: Verifier;
  work: Work;
  /** Keeps the work alive after the answer: EdgeRuntime.waitUntil on the platform. */
  background?: (task: Promise<void>) => void;
  onError?: (err: unknown) => void;
}

const json = (status: number, payload: unknown) =>
  new Response(JSON.stringify(payload), { status, headers: { "content-type": "application/json" } });

export function createHandler(options: HandlerOptions): (request: Request) => Promise<Response> {
  const seen = new Set<string>();
  const background = options.background ?? ((task: Promise<void>) => void task);
  return async (request) => {
    if (request.method !== "POST") return json(405, { error: "method_not_allowed", message: "POST only" });
    const raw = await readLimited(request);
    if (raw === null) return json(413, { error: "body_too_large", message: `body over ${MAX_BODY_BYTES} bytes` });
    let body: unknown;
    try {
      body = raw.trim() ? JSON.parse(raw) : {};
    } catch { // also a RangeError from a body nesting too deep: 400, never 500
      return json(400, { error: "bad_json", message: "body is not JSON (or nests too deep)" });
    }
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      return json(400, { error: "bad_body", message: "body must be a JSON object" });
    }
    let principal: Principal;
    try {
      principal = await options.verifier.verify(request.headers, body);
    } catch (err) {
      if (err instanceof AuthorityError) return json(err.status, err.toJSON());
      throw err;
    }
    const key = request.headers.get("idempotency-key") ?? "";
    if (key && seen.has(key)) return json(409, { error: "duplicate", message: "this delivery was already accepted" });
    if (key) seen.add(key);
    const task = options.work(principal, body as Record<string, unknown>).catch((err: unknown) => {
      options.onError?.(err);
    });
    background(task);
    return json(202, { accepted: true, user_id: principal.userId, authority: principal.authority });
  };
}

async function readLimited(request: Request): Promise<string | null> {
  if (!request.body) return "";
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return new TextDecoder().decode(all);
}
