/** Renders a node's pino JSON line as `name  LEVEL message {fields}` for a person at a terminal. */
const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'node', 'name', 'msg', 'pid', 'hostname']);

export function formatLine(name: string, line: string): string {
  const label = name.padEnd(16);
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return `${label} ${line}`;
  }
  if (typeof rec !== 'object' || rec === null) return `${label} ${line}`;
  const rest = Object.fromEntries(Object.entries(rec).filter(([k]) => !HIDDEN.has(k)));
  // pino writes numeric levels, etcd's zap logger names them ("warn").
  const level = typeof rec.level === 'string' ? rec.level.toUpperCase() : (LEVELS[Number(rec.level)] ?? 'INFO');
  const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
  return `${label} ${level.padEnd(5)} ${String(rec.msg ?? '')}${extra}`;
}
