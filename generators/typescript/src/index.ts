// The generator kit: verify what the generation processor sends, then report progress and the result.
export { AuthorityError, asUuid, CHECK_TIMEOUT_S, credentialKind, ISSUER, MAX_LEEWAY_S, Verifier } from "./authority.ts";
export type { Keys, OwnerLookup, Principal, VerifierOptions } from "./authority.ts";
export { ConfigError, keysFromEnv } from "./config.ts";
export type { Env } from "./config.ts";
export { createHandler, MAX_BODY_BYTES } from "./handler.ts";
export type { HandlerOptions, Work } from "./handler.ts";
export { finish, heartbeat, postgresQuery } from "./lifecycle.ts";
export type { Query } from "./lifecycle.ts";
export { restOwnerLookup, sqlOwnerLookup } from "./owners.ts";
export { MemoryReplayGuard, SqlReplayGuard } from "./replay.ts";
export type { ReplayGuard } from "./replay.ts";

/** One call for a request: the principal, or an AuthorityError carrying status and reason code. */
export async function authorize(verifier: import("./authority.ts").Verifier, request: Request,
  body: unknown): Promise<import("./authority.ts").Principal> {
  return await verifier.verify(request.headers, body);
}
