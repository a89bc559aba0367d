import { InjectError } from './errors.js';
import type { NamespaceLabels } from './sidecarset/match.js';
import { INJECT_ANNOTATION } from './transform.js';

/**
 * Reads the namespace opt-out: the label `tandem.dev/inject: disabled` on a Namespace object in the
 * input, as the webhook's namespaceSelector reads it. `enabled` or no label leaves injection on, and
 * any other value is an error. A namespace without a Namespace object in the input is enabled.
 */
export function isNamespaceInjectionDisabled(namespace: string, namespaceLabels: NamespaceLabels): boolean {
  const value: unknown = namespaceLabels.get(namespace)?.[INJECT_ANNOTATION];
  if (value === undefined || value === 'enabled') {
    return false;
  }
  if (value === 'disabled') {
    return true;
  }
  throw new InjectError(
    `Invalid label ${INJECT_ANNOTATION} ${JSON.stringify(value)} on Namespace/${namespace}: expected enabled or disabled. Fix the label in the Namespace object.`,
  );
}
