/**
 * An error in the webhook's options, files or environment, such as an unreadable TLS key or a
 * missing openssl. The CLI prints its message without a stack trace and exits with 1. Any other
 * exception is a bug in tandem and keeps its stack trace.
 */
export class WebhookError extends Error {
  override name = 'WebhookError';
}
