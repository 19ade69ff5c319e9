/**
 * Forward and backward recorders of a bottleneck block (`BottleneckLayer`):
 * relu(bn1(conv1)) → relu(bn2(conv2)) → relu(bn3(conv3) + shortcut), the
 * shortcut an identity or a 1x1 conv + BatchNorm.
 *
 * @module
 */
import type { BottleneckLayer } from "../../model/plan.ts";
import type { Region } from "../runtime.ts";
import type { Builder } from "./builder.ts";
import {
  bnBackward,
  convBackward,
  convBnForward,
  type ConvBnSaved,
} from "./conv_bn.ts";

/** What a block's forward keeps for its backward. */
export interface BottleneckSaved {
  readonly layer: BottleneckLayer;
  readonly c1: ConvBnSaved;
  readonly c2: ConvBnSaved;
  readonly c3: ConvBnSaved;
  readonly shortcut?: ConvBnSaved;
}

/** Records a block: `x` `[R·tIn, cin]` → `y` `[R·tOut, cout]`. */
export function bottleneckForward(
  b: Builder,
  o: { layer: BottleneckLayer; x: Region },
): { y: Region; saved: BottleneckSaved } {
  const { layer: l, x } = o;
  const c1 = convBnForward(b, { conv: l.conv1, x, relu: true });
  const c2 = convBnForward(b, { conv: l.conv2, x: c1.y, relu: true });
  const shortcut = l.shortcut
    ? convBnForward(b, { conv: l.shortcut, x, relu: false })
    : undefined;
  const c3 = convBnForward(b, {
    conv: l.conv3,
    x: c2.y,
    relu: true,
    r: shortcut?.y ?? x,
  });
  return { y: c3.y, saved: { layer: l, c1, c2, c3, shortcut } };
}

/**
 * Records a block's backward from `dy` (the gradient of its output).
 *
 * @returns The gradient of its input.
 */
export function bottleneckBackward(
  b: Builder,
  o: { saved: BottleneckSaved; dy: Region },
): Region {
  const { layer: l, c1, c2, c3, shortcut } = o.saved;
  const p = l.name;
  const R = b.rows;
  const dh3 = b.act(`${p}.dh3`, R * l.tOut * l.cout);
  const dx = b.act(`${p}.dx`, R * l.tIn * l.cin);
  if (shortcut) {
    const dres = b.act(`${p}.dres`, R * l.tOut * l.cout);
    bnBackward(b, { saved: c3.bn!, dy: o.dy, dx: dh3, dz: dres });
    const dhd = b.act(`${p}.dhd`, R * l.tOut * l.cout);
    bnBackward(b, { saved: shortcut.bn!, dy: dres, dx: dhd });
    convBackward(b, { saved: shortcut, dh: dhd, dx });
  } else {
    // identity shortcut: the masked gradient goes straight to dx.
    bnBackward(b, { saved: c3.bn!, dy: o.dy, dx: dh3, dz: dx });
  }
  const dy2 = b.act(`${p}.dy2`, R * l.tOut * l.cmid);
  convBackward(b, { saved: c3, dh: dh3, dx: dy2 });
  const dh2 = b.act(`${p}.dh2`, R * l.tOut * l.cmid);
  bnBackward(b, { saved: c2.bn!, dy: dy2, dx: dh2 });
  const dy1 = b.act(`${p}.dy1`, R * l.tIn * l.cmid);
  convBackward(b, { saved: c2, dh: dh2, dx: dy1 });
  const dh1 = b.act(`${p}.dh1`, R * l.tIn * l.cmid);
  bnBackward(b, { saved: c1.bn!, dy: dy1, dx: dh1 });
  convBackward(b, { saved: c1, dh: dh1, dx, accumulate: true });
  return dx;
}
