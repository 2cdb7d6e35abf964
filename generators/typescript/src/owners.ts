// Owner look-ups: who owns a generation. A failed look-up throws, which the verifier answers 503
// ("retry later"), never 404: a row that exists must not be failed because the REST API was down.
import type { OwnerLookup } from "./authority.ts";
import type { Query } from "./lifecycle.ts";

/** Through the platform's REST API with a secret key (the edge function's usual way to the table). */
export function restOwnerLookup(supabaseUrl: string, secretKey: string, table = "generation_history",
  fetchImpl: typeof fetch = fetch): OwnerLookup {
  const base = supabaseUrl.replace(/\/+$/, "");
  return async (id) => {
    const url = `${base}/rest/v1/${table}?id=eq.${encodeURIComponent(id)}&select=user_id`;
    const response = await fetchImpl(url, { headers: { apikey: secretKey, accept: "application/json" } });
    if (!response.ok) {
      await response.body?.cancel();
      throw new Error(`owner look-up answered ${response.status}`);
    }
    const rows: unknown = await response.json();
    if (!Array.isArray(rows)) throw new Error("owner look-up answered something other than a list");
    const owner: unknown = rows[0]?.user_id;
    return typeof owner === "string" ? owner : null;
  };
}

/** Through SQL, for a generator with its own database connection. */
export function sqlOwnerLookup(query: Query, table = "public.generation_history"): OwnerLookup {
  return async (id) => {
    const rows = await query(`SELECT user_id::text AS user_id FROM ${table} WHERE id = $1::uuid`, [id]);
    const owner = rows[0]?.["user_id"];
    return typeof owner === "string" ? owner : null;
  };
}
