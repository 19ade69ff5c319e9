/**
 * Deno lint plugin `amaut` with the rule `error-message`: in product code
 * (`stages/`, `pipeline/`, `model/`, `gpu/`, `lib/`; not tests) a built-in
 * error constructed with a literal message (`new Error("…")`,
 * `new RangeError(`…`)`, also a `"…" + x` concatenation) must start with
 * "Cannot " — the project's rule that an error says what failed and what
 * to do. Messages built elsewhere (a variable, a call) are not checked.
 *
 * Loaded through `lint.plugins` in `deno.json`; `deno lint` reports
 * `amaut/error-message`.
 *
 * @module
 */

/** Directories whose modules are product code. */
const PRODUCT = /(^|[\\/])(stages|pipeline|model|gpu|lib)[\\/]/;
/** Test and test-helper modules, exempt. */
const TESTS = /(_test|[\\/]_?testing)\.ts$/;
/** Built-in error constructors whose first argument is the message. */
const ERRORS = new Set([
  "Error",
  "RangeError",
  "TypeError",
  "SyntaxError",
  "ReferenceError",
  "EvalError",
  "URIError",
]);
const PREFIX = "Cannot ";

/** Whether the rule applies to a file (product code, not a test). */
export function isProductFile(filename: string): boolean {
  const path = filename.replaceAll("\\", "/");
  return PRODUCT.test(path) && !TESTS.test(path);
}

/**
 * The leading literal text of a message expression: a string literal, the
 * first part of a template literal, or the leftmost operand of a `+`
 * concatenation; `undefined` when the start is not literal text.
 */
export function leadingText(node: Deno.lint.Node): string | undefined {
  if (node.type === "Literal") {
    return typeof node.value === "string" ? node.value : undefined;
  }
  if (node.type === "TemplateLiteral") {
    const first = node.quasis[0];
    // `${x} …`: the message starts with whatever x is, not with "Cannot ".
    if (first.cooked === "" && node.expressions.length > 0) return "";
    return first.cooked;
  }
  if (node.type === "BinaryExpression" && node.operator === "+") {
    return leadingText(node.left);
  }
  return undefined;
}

/** The plugin: one rule, `error-message`. */
const plugin: Deno.lint.Plugin = {
  name: "amaut",
  rules: {
    "error-message": {
      create(context) {
        if (!isProductFile(context.filename)) return {};
        return {
          NewExpression(node) {
            if (
              node.callee.type !== "Identifier" ||
              !ERRORS.has(node.callee.name) || node.arguments.length === 0
            ) {
              return;
            }
            const text = leadingText(node.arguments[0]);
            if (text === undefined || text.startsWith(PREFIX)) return;
            context.report({
              node: node.arguments[0],
              message:
                `Error messages in product code start with "${PREFIX}…" (got "${
                  text.slice(0, 40)
                }…")`,
              hint:
                'Say what could not be done and what to do, e.g. "Cannot read spec.yaml: no such file; check the path".',
            });
          },
        };
      },
    },
  },
};

export default plugin;
