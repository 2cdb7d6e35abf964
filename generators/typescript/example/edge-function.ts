// supabase/functions/generate-website/index.ts: a generator as an edge function (verify_jwt = false).
// The kit is copied next to it (supabase/functions/_shared/genretry/) with deno.json mapping its imports.
import { buildGenerator } from "./generator.ts";

// EdgeRuntime.waitUntil keeps the generation running after the 202 answer (absent outside the platform)
const edge = (globalThis as { EdgeRuntime?: { waitUntil(task: Promise<unknown>): void } }).EdgeRuntime;
const generator = await buildGenerator((name) => Deno.env.get(name), {
  background: (task) => edge?.waitUntil(task),
});

Deno.serve(generator.handle);
