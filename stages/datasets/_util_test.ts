import assert from "node:assert/strict";
import { parseCsv } from "./_util.ts";

const cells = (text: string) => parseCsv(text).map((r) => r.cells);

Deno.test("parseCsv: plain rows, CRLF, blank lines, trimming, BOM", () => {
  assert.deepEqual(parseCsv("\uFEFFa,b\r\n\r\n c , d \n"), [
    { cells: ["a", "b"], line: 1 },
    { cells: ["c", "d"], line: 3 },
  ]);
  assert.deepEqual(cells("a,b"), [["a", "b"]]);
  assert.deepEqual(cells("a,,b,"), [["a", "", "b", ""]]);
  assert.deepEqual(cells(""), []);
});

Deno.test("parseCsv: quoted fields hold commas, doubled quotes and newlines", () => {
  assert.deepEqual(parseCsv('"x,y",1\n"say ""hi""" ,2\n"two\nlines",3\nz,4'), [
    { cells: ["x,y", "1"], line: 1 },
    { cells: ['say "hi"', "2"], line: 2 },
    { cells: ["two\nlines", "3"], line: 3 },
    { cells: ["z", "4"], line: 5 },
  ]);
  assert.deepEqual(cells('" keep spaces ",""'), [[" keep spaces ", ""]]);
});

Deno.test("parseCsv: an unterminated quote is a SyntaxError naming the line", () => {
  assert.throws(
    () => parseCsv('a,b\n"open,c\n'),
    (e: unknown) =>
      e instanceof SyntaxError &&
      e.message.startsWith("Cannot parse the CSV: ") &&
      e.message.includes("starting on line 2"),
  );
});
