/**
 * An error in the user's input: the CLI prints its messages without a stack trace and exits with 1.
 * Any other exception is a bug in tandem and keeps its stack trace. One error may carry several
 * messages, such as one per container whose image config is missing, so all are reported at once.
 */
export class InjectError extends Error {
  override name = 'InjectError';
  readonly messages: readonly string[];

  constructor(messages: string | readonly string[]) {
    const list = typeof messages === 'string' ? [messages] : [...messages];
    super(list.join('\n'));
    this.messages = list;
  }
}
