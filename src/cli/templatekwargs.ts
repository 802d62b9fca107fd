// chat_template_kwargs for the commands that render a model's chat template outside training (eval, logprobs,
// sample): the --chat-template-kwargs option, else the value the run that made the model trained with, so that a
// tuned Qwen3 trained with {"enable_thinking": false} is scored and sampled on prompts rendered the same way.

import { configError } from "../errors.js";
import { readRunConfig } from "../io/resolve.js";
import { type ChatTemplateKwargs, checkTemplateKwargs } from "../tokenizer/chat.js";
import type { Values } from "./args.js";

/**
 * --chat-template-kwargs (JSON) when given, else the chat_template_kwargs of the run folder `modelPath` (when it is
 * one), else null. Checked here, so that the message names where the value came from.
 */
export function templateKwargsFor(v: Values, modelPath: string | undefined): ChatTemplateKwargs | null {
  const raw = v.chat_template_kwargs;
  if (typeof raw === "string") {
    let given: unknown;
    try {
      given = JSON.parse(raw);
    } catch {
      throw configError(`--chat-template-kwargs ${raw}: not JSON; give it as '{"enable_thinking": false}'`);
    }
    return checkTemplateKwargs(given, (reason) => configError(`--chat-template-kwargs ${raw}: ${reason}`));
  }
  const saved = modelPath === undefined ? undefined : readRunConfig(modelPath)?.chat_template_kwargs;
  if (saved === undefined || saved === null) return null;
  return checkTemplateKwargs(saved, (reason) => configError(`${modelPath}: the run's "chat_template_kwargs" ${reason}`));
}
