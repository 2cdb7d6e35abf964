// A generator built on the kit, as an edge function would be: verify, answer 202, heartbeat, finish.
// The end-to-end test runs it under Node and Deno with the real daemon delivering to it.
import postgres from "postgres";
import { createHandler, finish, heartbeat, keysFromEnv, postgresQuery, restOwnerLookup, SqlReplayGuard, Verifier }
  from "../src/index.ts";
import type { Env, Principal } from "../src/index.ts";

/** The request handler for the generators named in GENRETRY_GENERATORS (path /<name>). */
export async function buildGenerator(env: Env, options: { background?: (task: Promise<void>) => void } = {}):
  Promise<{ handle: (r: Request) => Promise<Response>; close: () => Promise<void> }> {
  const keys = keysFromEnv(env);
  const secretKey = Object.values(keys.secretKeys ?? {})[0] ?? keys.serviceRoleKey ?? "";
  const ownerOf = restOwnerLookup(env("SUPABASE_URL") ?? "", secretKey);
  // a login role holding genretry_generator: EXECUTE on genretry.heartbeat, genretry.finish and the replay guard
  // GENRETRY_DB_URL, or the PGHOST/PGUSER/... variables when it is unset
  const dbUrl = env("GENRETRY_DB_URL");
  const pgOptions = { max: 4, onnotice: () => {} };
  const sql = dbUrl ? postgres(dbUrl, pgOptions) : postgres(pgOptions);
  const query = postgresQuery(sql);
  // every instance (isolate) of this generator refuses a token any of them accepted before
  const replay = new SqlReplayGuard(query);
  const workS = Number(env("GENRETRY_WORK_SECONDS") ?? "0.2");

  async function work(principal: Principal): Promise<void> {
    const id = principal.retryHistoryId;
    if (id === null) return; // a user's new generation: not part of this example
    const attempt = principal.attempt ?? 0;
    await new Promise((resolve) => setTimeout(resolve, workS * 1000));
    if (!(await heartbeat(query, id, attempt))) return; // a newer attempt replaced this one: stop
    await finish(query, id, attempt, "completed");
  }

  const handlers = new Map<string, (r: Request) => Promise<Response>>();
  for (const name of (env("GENRETRY_GENERATORS") ?? "generate-website").split(",").map((s) => s.trim())) {
    const verifier = await Verifier.create(name, keys, ownerOf, { replay });
    const onError = (err: unknown) => console.error("generation_error", String(err));
    handlers.set(name, createHandler({ verifier, work, onError, ...options }));
  }
  return {
    handle: async (request) => {
      const name = new URL(request.url).pathname.split("/").filter(Boolean).pop() ?? "";
      const handler = handlers.get(name);
      if (handler === undefined) {
        return new Response(JSON.stringify({ error: "unknown_generator", message: "no such generator" }),
          { status: 404, headers: { "content-type": "application/json" } });
      }
      return await handler(request);
    },
    close: async () => await sql.end({ timeout: 1 }),
  };
}
