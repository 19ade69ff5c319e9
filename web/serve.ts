/**
 * Builds and serves the `web/` page: bundles `web/app.ts` for the browser
 * with `deno bundle --platform browser` (held in memory and served as
 * `/dist/app.js`; nothing is written to the repository), serves the static
 * files of `web/`, and serves an exported model package folder (from
 * `deno task export`) at `/model/`, on 127.0.0.1 only.
 *
 * Usage:
 *
 * ```sh
 * deno task serve [--port 8080] [--model out/digits]
 * ```
 *
 * `--port 0` picks a free port. The page URL is printed once listening.
 * Exit codes: 1 the bundle failed, 2 bad command line.
 *
 * Permissions: `--allow-read` (web/, the package), `--allow-net=127.0.0.1`,
 * `--allow-run` (the `deno bundle` child), `--allow-env` (the child's
 * environment).
 *
 * @module
 */
// deno-lint-ignore-file no-console -- a command-line tool: printing the URL is its job
import { extname, join, resolve } from "node:path";
import { parseCommandLine, usageError } from "../lib/cli.ts";

/** The folder of this file: the page's static files. */
export const WEB_DIR = new URL(".", import.meta.url).pathname;
/** The browser entry point. */
export const ENTRY = join(WEB_DIR, "app.ts");
/** The repository root (where deno.json is). */
const ROOT = resolve(WEB_DIR, "..");

const CONTENT_TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".bin": "application/octet-stream",
  ".wav": "audio/wav",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

/**
 * Bundles `web/app.ts` for the browser with `deno bundle --platform browser`
 * (a child `deno` process, the project's deno.json and lock file).
 *
 * @returns The bundle's JavaScript.
 * @throws {Error} With the bundler's messages when it fails.
 */
export async function buildBundle(): Promise<Uint8Array<ArrayBuffer>> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--config",
      join(ROOT, "deno.json"),
      ENTRY,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success || out.stdout.length === 0) {
    throw new Error(
      `Cannot bundle ${ENTRY}: deno bundle exited with code ${out.code}\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
  }
  return out.stdout;
}

/** Options of {@linkcode startServer}. */
export interface ServeOptions {
  /** TCP port; 0 picks a free one (default 8080). */
  readonly port?: number;
  /** The exported package folder served at `/model/`. */
  readonly modelDir: string;
  /** The bundle served at `/dist/app.js` (default: {@linkcode buildBundle}). */
  readonly bundle?: Uint8Array<ArrayBuffer>;
  /** Called with the page URL once listening (default: prints it). */
  readonly onListen?: (url: string) => void;
}

/** A running server. */
export interface PageServer {
  /** The page's URL, e.g. `http://127.0.0.1:8080/`. */
  readonly url: string;
  /** Resolves when the server has stopped. */
  readonly finished: Promise<void>;
  /** Stops the server. */
  shutdown(): Promise<void>;
}

/** Maps a URL path to a file, or undefined when it names none we serve. */
function fileFor(pathname: string, modelDir: string): string | undefined {
  let path: string;
  try {
    path = decodeURIComponent(pathname);
  } catch {
    return undefined;
  }
  const parts = path.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === ".." || p.includes("\\"))) {
    return undefined;
  }
  if (parts[0] === "model") {
    // Only the package's own files: model.json and its weight files.
    return parts.length === 2 ? join(modelDir, parts[1]) : undefined;
  }
  if (parts.length === 0) return join(WEB_DIR, "index.html");
  // The page's static files, not its sources or tests.
  const ext = extname(parts[parts.length - 1]);
  if (![".html", ".css", ".svg", ".png", ".wav"].includes(ext)) {
    return undefined;
  }
  return join(WEB_DIR, ...parts);
}

/**
 * Serves the page on 127.0.0.1: `/` and the static files of `web/`,
 * `/dist/app.js` (the bundle), `/model/*` (the package folder).
 */
export async function startServer(options: ServeOptions): Promise<PageServer> {
  const bundle = options.bundle ?? await buildBundle();
  const modelDir = resolve(options.modelDir);
  const headers = (type: string) => ({
    "content-type": type,
    "cache-control": "no-store",
  });
  const handler = async (request: Request): Promise<Response> => {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("Method not allowed", { status: 405 });
    }
    const { pathname } = new URL(request.url);
    if (pathname === "/dist/app.js") {
      return new Response(request.method === "HEAD" ? null : bundle, {
        headers: headers(CONTENT_TYPES[".js"]),
      });
    }
    const file = fileFor(pathname, modelDir);
    if (file === undefined) return new Response("Not found", { status: 404 });
    try {
      const body = await Deno.readFile(file);
      const type = CONTENT_TYPES[extname(file)] ?? "application/octet-stream";
      return new Response(request.method === "HEAD" ? null : body, {
        headers: headers(type),
      });
    } catch (error) {
      if (
        error instanceof Deno.errors.NotFound ||
        error instanceof Deno.errors.IsADirectory
      ) {
        return new Response("Not found", { status: 404 });
      }
      throw error;
    }
  };
  let url = "";
  const { promise: listening, resolve: listened } = Promise.withResolvers<
    void
  >();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 8080,
    onListen: ({ port }) => {
      url = `http://127.0.0.1:${port}/`;
      (options.onListen ?? ((u) => console.log(`Serving ${u}`)))(url);
      listened();
    },
  }, handler);
  await listening;
  return {
    url,
    finished: server.finished,
    shutdown: () => server.shutdown(),
  };
}

const USAGE = "usage: deno task serve [--port 8080] [--model out/digits]";

/** The command line. Resolves when the server stops (never, normally). */
export async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(
    args,
    {
      port: { type: "string", default: "8080" },
      model: { type: "string", default: "out/digits" },
    },
    USAGE,
    { positionals: false },
  );
  if (typeof parsed === "number") return parsed;
  const port = Number(parsed.values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    return usageError(
      `--port must be an integer from 0 to 65535, not "${parsed.values.port}"`,
      USAGE,
    );
  }
  const modelDir = parsed.values.model;
  const hasConfig = await Deno.stat(join(modelDir, "model.json")).then(
    (s) => s.isFile,
    () => false,
  );
  if (!hasConfig) {
    console.error(
      `Warning: "${modelDir}" has no model.json, so the page will not load a model (make one with deno task export runs/<dir> ${modelDir}, or pass --model)`,
    );
  }
  console.log(`Bundling ${ENTRY}…`);
  let bundle: Uint8Array<ArrayBuffer>;
  try {
    bundle = await buildBundle();
  } catch (error) {
    console.error((error as Error).message);
    return 1;
  }
  const server = await startServer({
    port,
    modelDir,
    bundle,
    onListen: (url) =>
      console.log(
        `Serving ${url} (model package "${modelDir}" at ${url}model/; Ctrl-C stops)`,
      ),
  });
  await server.finished; // until killed
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
