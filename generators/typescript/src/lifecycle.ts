// Progress and result of a generation, fenced on the attempt (genretry.heartbeat and genretry.finish).
// The generator's database role holds genretry_generator: EXECUTE on these two functions and nothing else.

/** Runs one SQL statement with $n parameters and returns its rows: postgres.js's sql.unsafe fits. */
export type Query = (text: string, params: unknown[]) => Promise<Array<Record<string, unknown>>>;

/** true while this attempt is still the current one; false once a newer attempt replaced it: stop then. */
export async function heartbeat(query: Query, retryHistoryId: string, attempt: number): Promise<boolean> {
  const rows = await query("SELECT genretry.heartbeat($1::uuid, $2::integer) AS current", [retryHistoryId, attempt]);
  return rows[0]?.["current"] === true;
}

/** Report the result; true when recorded, false when the attempt was superseded (nothing changes then). */
export async function finish(query: Query, retryHistoryId: string, attempt: number,
  status: "completed" | "failed", errorMessage: string | null = null): Promise<boolean> {
  const rows = await query("SELECT genretry.finish($1::uuid, $2::integer, $3::text, $4::text) AS recorded",
    [retryHistoryId, attempt, status, errorMessage]);
  return rows[0]?.["recorded"] === true;
}

/** A Query on a postgres.js client (npm:postgres), connected as a role holding genretry_generator. */
export function postgresQuery(sql: { unsafe: (text: string, params: never[]) => PromiseLike<unknown> }): Query {
  return async (text, params) => (await sql.unsafe(text, params as never[])) as Array<Record<string, unknown>>;
}
