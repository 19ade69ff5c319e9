import assert from "node:assert/strict";
import { LAYOUTS } from "./mod.ts";

Deno.test("LAYOUTS maps each id to its layout, without synthetic", () => {
  assert.deepEqual(Object.keys(LAYOUTS).sort(), [
    "audiomnist",
    "cochlscene",
    "folder",
    "speech_commands",
    "vocalsound",
  ]);
  for (const [id, layout] of Object.entries(LAYOUTS)) {
    assert.equal(layout.id, id);
    assert.equal(typeof layout.index, "function");
    // the schema's layout literal is the id
    const r = layout.data.safeParse({ layout: id, root: "x" });
    assert.ok(r.success, id);
    assert.equal(
      layout.data.safeParse({ layout: "synthetic", root: "x" }).success,
      false,
    );
  }
});
