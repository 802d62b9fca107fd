// Chat templates: the Jinja source a model ships (tokenizer.chat_template in GGUF, chat_template in
// tokenizer_config.json / chat_template.jinja) rendered with @huggingface/jinja, the engine transformers.js uses.
// The variables are the ones transformers passes: messages, add_generation_prompt, bos_token, eos_token
// (raise_exception and strftime_now come with the engine).

import { Template } from "@huggingface/jinja";
import { configError } from "../errors.js";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderChatOptions {
  /** Append the header that opens the assistant's turn (the prompt side of a preference pair). */
  addGenerationPrompt: boolean;
  bosToken?: string;
  eosToken?: string;
  /** Where the template came from (a file, or "--chat-template"), named in error messages. */
  source?: string;
}

const cache = new Map<string, Template>();

export function renderChat(template: string, messages: ChatMessage[], opts: RenderChatOptions): string {
  const where = opts.source ?? "chat template";
  let t = cache.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (e) {
      throw configError(`${where}: the chat template does not parse (${(e as Error).message}); fix or replace it`);
    }
    if (cache.size > 16) cache.clear();
    cache.set(template, t);
  }
  try {
    return t.render({
      messages,
      add_generation_prompt: opts.addGenerationPrompt,
      bos_token: opts.bosToken ?? "",
      eos_token: opts.eosToken ?? "",
    });
  } catch (e) {
    const roles = messages.map((m) => m.role).join(", ");
    throw configError(
      `${where}: the chat template failed on a conversation with roles [${roles}]: ${(e as Error).message}. ` +
        `Check that the roles and their order suit this model's template, or supply another template`,
    );
  }
}
