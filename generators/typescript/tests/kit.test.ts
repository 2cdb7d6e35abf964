// The kit's own pieces: configuration from the names the platform allows, and the request handler.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AuthorityError, ConfigError, createHandler, ISSUER, keysFromEnv, MAX_BODY_BYTES, Verifier } from "../src/index.ts";
import type { Principal } from "../src/index.ts";

const SECRET = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz";
const ROW = "2d9e6c74-7f2a-4e85-9c2a-8b3f4e5d6c73";
const OWNER = "0b7c4a52-5d0e-4c63-9a0e-6f1d2c3b4a51";
const env = (vars: Record<string, string>) => (name: string) => vars[name];

test("keys come only from names the platform injects or allows", () => {
  const keys = keysFromEnv(env({
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: SECRET }),
    GENRETRY_PROCESSOR_JWKS: '{"keys": []}',
    SUPABASE_JWT_SECRET: "never-read: the platform does not inject it into edge functions",
  }));
  assert.deepEqual(keys.secretKeys, { default: SECRET });
  assert.deepEqual(keys.processorJwks, { keys: [] });
  assert.equal(keys.platformJwtSecret, "");
  assert.equal(keysFromEnv(env({ SUPABASE_SECRET_KEYS: SECRET })).secretKeys?.["default"], SECRET);
});

test("bad configuration is one line naming the setting", () => {
  const cases: Array<[Record<string, string>, string]> = [
    [{}, "GENRETRY_PROCESSOR_JWKS: "],
    [{ GENRETRY_PROCESSOR_JWKS: "{" }, "GENRETRY_PROCESSOR_JWKS: not valid JSON"],
    [{ GENRETRY_PROCESSOR_JWKS: "[1]" }, "GENRETRY_PROCESSOR_JWKS: expected"],
    [{ SUPABASE_SECRET_KEYS: '{"default": 1}' }, "SUPABASE_SECRET_KEYS: expected"],
    [{ SUPABASE_JWKS: "[".repeat(100_000) }, "SUPABASE_JWKS: not valid JSON"],
  ];
  for (const [vars, start] of cases) {
    assert.throws(() => keysFromEnv(env(vars)), (err: unknown) =>
      err instanceof ConfigError && err.message.startsWith(start) && !err.message.includes("\n"));
  }
});

async function handler(): Promise<{ handle: (r: Request) => Promise<Response>; started: Principal[] }> {
  const started: Principal[] = [];
  const verifier = await Verifier.create("generate-website", { secretKeys: { default: SECRET } },
    async (id) => (id === ROW ? OWNER : null));
  const handle = createHandler({ verifier, work: async (p) => void started.push(p) });
  return { handle, started };
}

const post = (body: string, headers: Record<string, string> = { apikey: SECRET }) =>
  new Request("http://127.0.0.1/generate-website", { method: "POST", body, headers });

test("a body nesting thousands deep is 400, never 500", async () => {
  const { handle, started } = await handler();
  const cases: Array<[string, number, string]> = [
    ["[".repeat(100_000), 400, "bad_json"],
    ["[".repeat(100_000) + "]".repeat(100_000), 400, "bad_body"],
    ['{"a":'.repeat(50_000) + "1" + "}".repeat(50_000), 403, "retry_id_required"], // V8 parses it: decided as usual
    ["{nope", 400, "bad_json"],
  ];
  for (const [body, status, code] of cases) {
    const response = await handle(post(body));
    assert.deepEqual([response.status, (await response.json()).error], [status, code]);
  }
  assert.equal(started.length, 0);
});

test("202 once per Idempotency-Key, 413 over the size limit, 405 for GET", async () => {
  const { handle, started } = await handler();
  const body = JSON.stringify({ retryHistoryId: ROW, retryAttempt: 1 });
  const first = await handle(post(body, { apikey: SECRET, "idempotency-key": `${ROW}:1` }));
  assert.equal(first.status, 202);
  assert.deepEqual(await first.json(), { accepted: true, user_id: OWNER, authority: "service-key" });
  const again = await handle(post(body, { apikey: SECRET, "idempotency-key": `${ROW}:1` }));
  assert.equal(again.status, 409);
  assert.equal(started.length, 1);
  assert.equal((await handle(post(" ".repeat(MAX_BODY_BYTES + 1)))).status, 413);
  assert.equal((await handle(new Request("http://127.0.0.1/generate-website"))).status, 405);
  const refused = await handle(post(body, {}));
  assert.deepEqual([refused.status, (await refused.json()).error], [401, "missing_credentials"]);
});

test("authorize(): an owner look-up through a REST API answering 503 is 503, never 404", async () => {
  const { authorize, AuthorityError, restOwnerLookup } = await import("../src/index.ts");
  const answers: Array<[number, unknown]> = [[503, { message: "down" }], [200, []], [200, [{ user_id: OWNER }]]];
  const seen: string[] = [];
  const fakeFetch = (async (url: string | URL | Request, init?: RequestInit) => {
    seen.push(`${String(url)} ${new Headers(init?.headers).get("apikey")}`);
    const [status, body] = answers.shift() ?? [500, null];
    return new Response(JSON.stringify(body), { status });
  }) as typeof fetch;
  const verifier = await Verifier.create("generate-website", { secretKeys: { default: SECRET } },
    restOwnerLookup("https://ref.supabase.co/", SECRET, "generation_history", fakeFetch));
  const request = new Request("http://127.0.0.1/generate-website", { method: "POST", headers: { apikey: SECRET } });
  const outcomes: Array<number | string> = [];
  for (let i = 0; i < 3; i++) {
    try {
      outcomes.push((await authorize(verifier, request, { retryHistoryId: ROW })).userId);
    } catch (err) {
      outcomes.push(err instanceof AuthorityError ? err.status : String(err));
    }
  }
  assert.deepEqual(outcomes, [503, 404, OWNER]);
  assert.equal(seen[0], `https://ref.supabase.co/rest/v1/generation_history?id=eq.${ROW}&select=user_id ${SECRET}`);
});

const PROCESSOR_SECRET = "p".repeat(40);

/** A scoped token for ROW, attempt 1, signed HS256 with PROCESSOR_SECRET. */
async function scopedToken(jti: string): Promise<string> {
  const { SignJWT } = await import("jose");
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ iss: ISSUER, role: "generation_retry", aud: "generate-website", sub: OWNER,
    retry_history_id: ROW, attempt: 1, iat: now, exp: now + 300, jti })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" }).sign(new TextEncoder().encode(PROCESSOR_SECRET));
}

test("a replay guard that answers no boolean, or rejects, is 503 replay_check_failed: never a pass", async () => {
  const token = await scopedToken("j-1");
  const answers: Array<() => unknown> = [() => "false", () => 0, () => null, () => ({ fresh: false }),
    () => Promise.reject(new Error("database down"))];
  for (const answer of answers) {
    const replay = { seen: () => false, use: () => answer() as boolean };
    const verifier = await Verifier.create("generate-website", { processorSecret: PROCESSOR_SECRET }, async () => OWNER,
      { replay });
    await assert.rejects(verifier.verify({ authorization: `Bearer ${token}` }, { retryHistoryId: ROW, retryAttempt: 1 }),
      (err: unknown) => err instanceof AuthorityError && err.status === 503 && err.code === "replay_check_failed");
  }
});

test("an owner look-up or a replay guard that never answers is 503 within checkTimeoutS, not a hang", async () => {
  const token = await scopedToken("j-2");
  const never = () => new Promise<never>(() => {});
  const hungOwner = await Verifier.create("generate-website", { secretKeys: { default: SECRET } }, never,
    { checkTimeoutS: 0.2 });
  await assert.rejects(hungOwner.verify({ apikey: SECRET }, { retryHistoryId: ROW }),
    (err: unknown) => err instanceof AuthorityError && err.status === 503 && err.code === "owner_lookup_failed");
  const hungGuard = await Verifier.create("generate-website", { processorSecret: PROCESSOR_SECRET }, async () => OWNER,
    { checkTimeoutS: 0.2, replay: { seen: () => false, use: never } });
  await assert.rejects(hungGuard.verify({ authorization: `Bearer ${token}` }, { retryHistoryId: ROW, retryAttempt: 1 }),
    (err: unknown) => err instanceof AuthorityError && err.status === 503 && err.code === "replay_check_failed");
});
