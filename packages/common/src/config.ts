import { z } from 'zod';

/**
 * Parses the environment once, at start-up, against a zod schema. A bad value stops the process
 * with one message listing every problem, instead of failing later on first use.
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const parsed = schema.safeParse(env);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
  throw new Error(`invalid configuration:\n${lines.join('\n')}`);
}

/** An integer environment variable with a default, e.g. `REPLICATION_TIMEOUT_MS`. */
export const envInt = (fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.coerce.number().int().min(min).max(max).default(fallback);

export const envPort = (fallback: number) => envInt(fallback, 0, 65535);

/** An optional non-empty string; an empty variable counts as unset. */
export const envOptionalString = () =>
  z
    .string()
    .optional()
    .transform((s) => (s === '' ? undefined : s));

export const envUrl = () => z.url().transform((u) => u.replace(/\/+$/, ''));
