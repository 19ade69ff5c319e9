/**
 * Resolves a stage entry's `use:` to a stage module: a built-in id, a path
 * relative to the spec file that names it, or an https URL (http only for
 * loopback hosts, for tests). URL modules are fetched once, their content
 * type checked (JavaScript or TypeScript), hashed (sha256) and checked
 * against the lockfile's `remote` section; then exactly those bytes are
 * imported (as a `data:` URL, so Deno's module cache can never substitute a
 * stale copy), once `--allow-import` grants the host. A first use records the
 * hash in the lockfile; `--update-lock <url>` accepts changed code in one
 * step. The hash is recorded in the plan. Every module must export `stage`
 * matching the stage contract.
 *
 * @module
 */
import { dirname, resolve as resolvePath } from "node:path";
import { pathToFileURL } from "node:url";
import type { Issue, Location } from "./diagnostics.ts";
import { didYouMean } from "./diagnostics.ts";
import type { Stage } from "./types.ts";
import { STAGE_API } from "./types.ts";
import {
  moduleDataUrl,
  moduleLanguage,
  readLockRemote,
  writeLockEntry,
} from "./remote.ts";

/** How a stage was found. */
export type StageOrigin = "builtin" | "file" | "url";

/** A resolved stage module. */
export interface ResolvedStage {
  readonly stage: Stage;
  readonly origin: StageOrigin;
  /** Module specifier imported (file: or https: URL); absent for built-ins. */
  readonly specifier?: string;
  /** `sha256-<hex>` of the module source, for URL stages. */
  readonly integrity?: string;
  /** Whether the lockfile held this URL's hash before the run. */
  readonly locked?: boolean;
}

/** Settings for resolution. */
export interface ResolveSettings {
  /** Built-in stages by id. */
  readonly builtins: Readonly<Record<string, Stage>>;
  /** Lockfile whose `remote` hashes URL stages are checked against. */
  readonly lockfile?: string;
  /** URLs whose changed code is accepted: their lock entries are rewritten (`--update-lock`). */
  readonly updateLock?: readonly string[];
}

/** Stage id pattern (snake_case). */
export const STAGE_ID_PATTERN = /^[a-z][a-z0-9_]*$/;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/;

/** Classifies a `use:` value. */
export function useKind(use: string): StageOrigin | "bad" {
  if (/^https?:\/\//.test(use)) return "url";
  if (use.startsWith("./") || use.startsWith("../") || use.startsWith("/")) {
    return "file";
  }
  if (/^[a-z][a-z0-9_]*$/.test(use)) return "builtin";
  return "bad";
}

/**
 * Lists what is wrong with a module's `stage` export (empty when it conforms).
 *
 * @param mod The imported module namespace.
 */
export function stageContractProblems(mod: unknown): string[] {
  const m = mod as Record<string, unknown> | null;
  if (!m || typeof m !== "object" || !("stage" in m)) {
    const names = m && typeof m === "object" ? Object.keys(m) : [];
    return [
      `it does not export \`stage\`${
        names.length ? ` (its exports: ${names.join(", ")})` : ""
      }`,
    ];
  }
  const s = m.stage as Record<string, unknown> | null;
  if (!s || typeof s !== "object") {
    return ["its `stage` export is not an object"];
  }
  const problems: string[] = [];
  const missing = (field: string, what: string) =>
    problems.push(`its \`stage\` export lacks "${field}" (${what})`);
  if (typeof s.id !== "string") missing("id", "a snake_case string");
  else if (!STAGE_ID_PATTERN.test(s.id)) {
    problems.push(`its stage id "${s.id}" is not snake_case`);
  }
  if (typeof s.version !== "string") missing("version", "a semver string");
  if (s.api !== STAGE_API) {
    problems.push(
      s.api === undefined
        ? `its \`stage\` export lacks "api" (must be ${STAGE_API})`
        : `its stage targets api ${
          String(s.api)
        }, this pipeline runs api ${STAGE_API}`,
    );
  }
  if (typeof s.summary !== "string") missing("summary", "a one-line string");
  const opts = s.options as { safeParse?: unknown } | undefined;
  if (!opts || typeof opts.safeParse !== "function") {
    missing("options", "a zod schema");
  }
  for (const f of ["takes", "provides"]) {
    const v = s[f];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      missing(f, "an array of key names");
    }
  }
  const need: Record<string, string> = {
    source: "open",
    map: "apply",
    step: "run",
  };
  if (typeof s.kind !== "string" || !(s.kind in need)) {
    problems.push(
      s.kind === undefined
        ? `its \`stage\` export lacks "kind" (source, map or step)`
        : `its stage kind "${String(s.kind)}" is not source, map or step`,
    );
  } else if (typeof s[need[s.kind]] !== "function") {
    missing(need[s.kind], `a ${s.kind} stage needs ${need[s.kind]}()`);
  }
  if (s.layouts !== undefined && typeof s.layouts !== "function") {
    problems.push(
      "its `layouts` is not a function of the options (returning { key: { shape, dtype } })",
    );
  }
  const may = s.resumeMayChange;
  if (
    may !== undefined &&
    (typeof may !== "object" || may === null ||
      Object.values(may).some((v) => v !== "any" && v !== "grow"))
  ) {
    problems.push(
      'its `resumeMayChange` is not a mapping of option names to "any" or "grow"',
    );
  }
  if (s.kind === "source") {
    const d = s.data as { safeParse?: unknown } | undefined;
    if (!d || typeof d.safeParse !== "function") {
      missing("data", "a source stage needs a data schema");
    }
  }
  return problems;
}

/** sha256 of bytes as lowercase hex. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    bytes as Uint8Array<ArrayBuffer>,
  );
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0"))
    .join("");
}

/** How remote-stage permission is really granted (`deno task` takes no permission flags). */
export function permissionHint(host: string): string {
  return `run "deno run --allow-read --allow-write --allow-env --allow-import=${host} --allow-net=${host} cli.ts run <spec>", or add --allow-import=${host} --allow-net=${host} to the "run" and "validate" task commands in deno.json (deno task run passes no permission flags on)`;
}

/**
 * Resolves one `use:` value.
 *
 * @param use The `use:` text.
 * @param fromFile The spec file that declared it (relative paths start there).
 * @param at Location of the `use:` value, for issues.
 * @param path Readable spec path of the entry, for issues.
 * @param settings Built-ins and lockfile.
 */
export async function resolveStage(
  use: string,
  fromFile: string,
  at: Location,
  path: string,
  settings: ResolveSettings,
): Promise<{ resolved?: ResolvedStage; issues: Issue[] }> {
  const issue = (
    code: Issue["code"],
    message: string,
    hint?: string,
  ): { issues: Issue[] } => ({
    issues: [{ ...at, code, path, message, hint }],
  });
  const kind = useKind(use);
  if (kind === "builtin") {
    const stage = settings.builtins[use];
    if (stage) return { resolved: { stage, origin: "builtin" }, issues: [] };
    const ids = Object.keys(settings.builtins);
    const near = didYouMean(use, ids);
    return issue(
      "unknown_stage",
      `Cannot resolve stage "${use}": no built-in stage has this id`,
      near
        ? `did you mean "${near}"? built-in stages: ${ids.join(", ")}`
        : `built-in stages: ${
          ids.join(", ")
        }; or use a path (./my_stage.ts) or an https URL`,
    );
  }
  if (kind === "bad") {
    return issue(
      "unknown_stage",
      `Cannot resolve stage "${use}": it is neither a built-in id, a relative path nor a URL`,
      "write a built-in id (mono_mix), a path starting with ./ or ../, or an https:// URL",
    );
  }
  let specifier: string;
  let mod: unknown;
  let integrity: string | undefined;
  let locked: boolean | undefined;
  let expected: string | undefined;
  if (kind === "url") {
    const url = new URL(use);
    if (url.protocol === "http:" && !LOOPBACK.test(url.hostname)) {
      return issue(
        "bad_stage_module",
        `Cannot load stage "${use}": remote stages must use https`,
        `write "https://${url.host}${url.pathname}"`,
      );
    }
    specifier = url.href;
    let bytes: Uint8Array;
    let contentType: string | null;
    try {
      const response = await fetch(specifier);
      if (!response.ok) {
        await response.body?.cancel();
        return issue(
          "bad_stage_module",
          `Cannot load stage "${use}": the server answered ${response.status} ${response.statusText}`,
        );
      }
      contentType = response.headers.get("content-type");
      bytes = new Uint8Array(await response.arrayBuffer());
    } catch (error) {
      if (
        error instanceof Deno.errors.NotCapable ||
        error instanceof Deno.errors.PermissionDenied
      ) {
        return issue(
          "import_denied",
          `Cannot load stage "${use}": network access to "${url.host}" is not granted`,
          permissionHint(url.host),
        );
      }
      return issue(
        "bad_stage_module",
        `Cannot load stage "${use}": ${
          (error as Error).message.split("\n")[0]
        }`,
      );
    }
    const language = moduleLanguage(contentType, specifier);
    if ("problem" in language) {
      return issue(
        "bad_stage_module",
        `Cannot load stage "${use}": ${language.problem}`,
        "serve .ts files as application/typescript and .js as text/javascript (Python's http.server sends .ts as text/vnd.trolltech.linguist; fix its mimetypes or use another server)",
      );
    }
    const hex = await sha256Hex(bytes);
    integrity = `sha256-${hex}`;
    const lock = await readLockRemote(settings.lockfile);
    expected = lock[specifier];
    locked = expected !== undefined;
    const accept = settings.updateLock?.includes(specifier) ?? false;
    if (expected !== undefined && expected !== hex && !accept) {
      return issue(
        "integrity_mismatch",
        `Cannot load stage "${use}": its source changed since it was locked (lockfile ${settings.lockfile} has sha256 ${
          expected.slice(0, 12)
        }…, the server now sends ${hex.slice(0, 12)}…)`,
        `review the new code; to accept it, run once with --update-lock ${specifier}`,
      );
    }
    const importAccess = await Deno.permissions.query({
      name: "import",
      host: url.host,
    });
    if (importAccess.state !== "granted") {
      return issue(
        "import_denied",
        `Cannot load stage "${use}": import access to "${url.host}" is not granted`,
        permissionHint(url.host),
      );
    }
    if (settings.lockfile && expected !== hex) {
      await writeLockEntry(settings.lockfile, specifier, hex);
    }
    try {
      mod = await import(moduleDataUrl(bytes, language.language));
    } catch (error) {
      return issue(
        "bad_stage_module",
        `Cannot load stage "${use}": ${
          ((error as Error).message ?? String(error)).split("\n")[0]
        }`,
        "a remote stage is one self-contained module: it may import npm: and https: modules, not relative files (bundle it with deno bundle)",
      );
    }
  } else {
    const abs = use.startsWith("/")
      ? use
      : resolvePath(dirname(resolvePath(fromFile)), use);
    specifier = pathToFileURL(abs).href;
  }
  try {
    if (kind === "file") mod = await import(specifier);
  } catch (error) {
    const msg = (error as Error).message ?? String(error);
    if (
      /Requires (import|read) access/.test(msg) ||
      error instanceof Deno.errors.NotCapable
    ) {
      const host = kind === "url" ? new URL(specifier).host : "";
      return issue(
        "import_denied",
        `Cannot load stage "${use}": ${
          kind === "url"
            ? `import access to "${host}"`
            : "read access to the file"
        } is not granted`,
        kind === "url"
          ? permissionHint(host)
          : "run with --allow-read for the stage file",
      );
    }
    const notFound = /Module not found|No such file/.test(msg);
    return issue(
      "bad_stage_module",
      `Cannot load stage "${use}": ${
        notFound ? `file not found (${specifier})` : msg.split("\n")[0]
      }`,
      notFound
        ? "relative paths are resolved against the spec file that names them"
        : undefined,
    );
  }
  const problems = stageContractProblems(mod);
  if (problems.length > 0) {
    return issue(
      "bad_stage_module",
      `Cannot use stage module "${use}": ${problems.join("; ")}`,
      "a stage module exports `stage = defineStage({ id, version, api: 1, kind, summary, options, takes, provides, ... })`",
    );
  }
  return {
    resolved: {
      stage: (mod as { stage: Stage }).stage,
      origin: kind,
      specifier,
      integrity,
      locked,
    },
    issues: [],
  };
}
