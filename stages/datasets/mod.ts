/**
 * The dataset layouts of the `load` stage, by `data.layout` id (the
 * `synthetic` layout is handled by the stage itself).
 *
 * @module
 */
import type { Layout } from "./types.ts";
import { AudioMnistData, layout as audiomnist } from "./audiomnist.ts";
import { CochlSceneData, layout as cochlscene } from "./cochlscene.ts";
import { FolderData, layout as folder } from "./folder.ts";
import {
  layout as speechCommands,
  SpeechCommandsData,
} from "./speech_commands.ts";
import { layout as vocalsound, VocalSoundData } from "./vocalsound.ts";

export {
  AudioMnistData,
  CochlSceneData,
  FolderData,
  SpeechCommandsData,
  VocalSoundData,
};
export type * from "./types.ts";

/** The file-based layouts, by id. */
export const LAYOUTS: {
  readonly "speech_commands": Layout<SpeechCommandsData>;
  readonly audiomnist: Layout<AudioMnistData>;
  readonly vocalsound: Layout<VocalSoundData>;
  readonly cochlscene: Layout<CochlSceneData>;
  readonly folder: Layout<FolderData>;
} = {
  "speech_commands": speechCommands,
  audiomnist,
  vocalsound,
  cochlscene,
  folder,
};

/** A file-based layout id. */
export type LayoutId = keyof typeof LAYOUTS;
