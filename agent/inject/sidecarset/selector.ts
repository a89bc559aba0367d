import { InjectError } from '../errors.js';
import { isRecord, type LabelSelector } from '../k8s.js';

const OPERATORS = ['In', 'NotIn', 'Exists', 'DoesNotExist'] as const;

/**
 * Checks a metav1.LabelSelector as Kubernetes and Kruise do: valid operators, values only with In
 * and NotIn, and at least one requirement, because Kruise rejects an empty SidecarSet selector.
 */
export function validateLabelSelector(selector: unknown, where: string): asserts selector is LabelSelector {
  if (!isRecord(selector)) {
    throw new InjectError(`Invalid ${where}: not an object.`);
  }
  const { matchLabels, matchExpressions } = selector;
  if (matchLabels !== undefined && matchLabels !== null) {
    if (!isRecord(matchLabels) || !Object.values(matchLabels).every((value) => typeof value === 'string')) {
      throw new InjectError(`Invalid ${where}: matchLabels must map label keys to string values (quote values such as "true").`);
    }
  }
  if (matchExpressions !== undefined && matchExpressions !== null && !Array.isArray(matchExpressions)) {
    throw new InjectError(`Invalid ${where}: matchExpressions is not a list.`);
  }

  const expressions = (matchExpressions ?? []) as unknown[];
  for (const [index, expression] of expressions.entries()) {
    const at = `${where}: matchExpressions[${index}]`;
    if (!isRecord(expression) || typeof expression.key !== 'string' || expression.key === '') {
      throw new InjectError(`Invalid ${at}: key is missing.`);
    }
    if (!OPERATORS.includes(expression.operator as (typeof OPERATORS)[number])) {
      throw new InjectError(`Invalid ${at}: operator ${JSON.stringify(expression.operator)}, expected ${OPERATORS.join(', ')}.`);
    }
    const values = expression.values ?? [];
    if (!Array.isArray(values) || !values.every((value) => typeof value === 'string')) {
      throw new InjectError(`Invalid ${at}: values must be a list of strings.`);
    }
    const needsValues = expression.operator === 'In' || expression.operator === 'NotIn';
    if (needsValues && values.length === 0) {
      throw new InjectError(`Invalid ${at}: operator ${expression.operator} needs at least one value.`);
    }
    if (!needsValues && values.length > 0) {
      throw new InjectError(`Invalid ${at}: operator ${expression.operator} takes no values.`);
    }
  }

  if (Object.keys(matchLabels ?? {}).length + expressions.length === 0) {
    throw new InjectError(`Invalid ${where}: the selector is empty. Kruise requires at least one label or expression.`);
  }
}

/** Returns whether labels satisfy every requirement of a validated selector. */
export function matchesLabelSelector(selector: LabelSelector, labels: Readonly<Record<string, string>>): boolean {
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (labels[key] !== value) {
      return false;
    }
  }

  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = Object.hasOwn(labels, key);
    const value = labels[key];
    const matched =
      operator === 'In'
        ? has && values.includes(value!)
        : operator === 'NotIn'
          ? !has || !values.includes(value!)
          : operator === 'Exists'
            ? has
            : !has;
    if (!matched) {
      return false;
    }
  }
  return true;
}

/** Returns the label keys a selector reads. */
export function selectorKeys(selector: LabelSelector): string[] {
  return [...Object.keys(selector.matchLabels ?? {}), ...(selector.matchExpressions ?? []).map((expression) => expression.key)];
}
