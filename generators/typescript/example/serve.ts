// Serve the example generator on loopback under Deno (Deno.serve) or Node (node:http); prints the port.
import { createServer } from "node:http";
import type { IncomingMessage, ServerResponse } from "node:http";
import { buildGenerator } from "./generator.ts";

interface DenoLike {
  env: { get(name: string): string | undefined };
  serve(options: { port: number; hostname: string; onListen: (addr: { port: number }) => void },
    handler: (request: Request) => Promise<Response>): unknown;
}

const deno = (globalThis as { Deno?: DenoLike }).Deno;
const env = (name: string) => (deno ? deno.env.get(name) : process.env[name]);
const port = Number(env("PORT") ?? "0");
const generator = await buildGenerator(env);

if (deno) {
  deno.serve({ port, hostname: "127.0.0.1", onListen: (addr) => console.log(`listening ${addr.port}`) },
    generator.handle);
} else {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
      const body = req.method === "GET" || req.method === "HEAD" ? null : Buffer.concat(chunks);
      const request = new Request(`http://127.0.0.1${req.url ?? "/"}`, { method: req.method ?? "GET", headers, body });
      generator.handle(request).then(async (response) => {
        res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
        res.end(Buffer.from(await response.arrayBuffer()));
      }, (err: unknown) => {
        console.error("handler_error", String(err));
        res.writeHead(500).end();
      });
    });
  });
  server.listen(port, "127.0.0.1", () => {
    const address = server.address();
    console.log(`listening ${typeof address === "object" && address ? address.port : port}`);
  });
  process.on("SIGTERM", () => {
    server.close();
    void generator.close().then(() => process.exit(0));
  });
}
