#!/usr/bin/env node
// Runs an Artillery scenario of this folder against the shardkv router.
//
//   node loadtest/run.cjs [scenario] [artillery run options...]
//
// scenario: a name of this folder (`mixed` -> loadtest/mixed.yml, the default; `readonly-1000`,
// `readonly-20x`, `write-heavy`, `hot-key`) or a path to a .yml file. Everything else is passed
// on to `artillery run`. Settings come from the environment (see settings.cjs / README.md); the
// defaults of the scenario are filled in here. A JSON report is
// written to loadtest/reports/ unless --output/-o is given. Exits with artillery's exit code,
// which is non-zero when an `ensure` check fails.
//
// Artillery is started with the no-telemetry.cjs preload, so it sends nothing out.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const settings = require('./settings.cjs');

const here = __dirname;

function die(msg) {
  process.stderr.write(`[loadtest] ${msg}\n`);
  process.exit(2);
}

function scenarioNames() {
  return fs
    .readdirSync(here)
    .filter((f) => f.endsWith('.yml') || f.endsWith('.yaml'))
    .map((f) => f.replace(/\.ya?ml$/, ''));
}

function resolveScenario(arg) {
  const name = arg || 'mixed';
  for (const candidate of [path.join(here, `${name}.yml`), path.join(here, `${name}.yaml`), path.resolve(name)]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return die(`no scenario ${JSON.stringify(name)}; known: ${scenarioNames().join(', ')} (or a path to a .yml)`);
}

function artilleryBin() {
  const pkgPath = require.resolve('artillery/package.json', { paths: [here] });
  const pkg = require(pkgPath);
  const rel = typeof pkg.bin === 'string' ? pkg.bin : pkg.bin.artillery; // ./bin/run
  return path.join(path.dirname(pkgPath), rel);
}

function stamp() {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

function main() {
  const args = process.argv.slice(2);
  if (args[0] === '-h' || args[0] === '--help') {
    const own = (name) => Object.entries(settings.defaultsFor(name))
      .filter(([k, v]) => v !== settings.DEFAULTS[k][0])
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    process.stdout.write(
      'usage: node loadtest/run.cjs [scenario] [artillery run options...]\n' +
        'scenarios (default mixed):\n' +
        scenarioNames()
          .map((n) => {
            const sc = settings.SCENARIOS[n];
            const diff = own(n);
            return `  ${n.padEnd(14)} ${sc ? sc.about : '(no description)'}\n` + (diff ? `  ${''.padEnd(14)} differs from mixed: ${diff}\n` : '');
          })
          .join('') +
        'settings (env, default of the mixed scenario):\n' +
        Object.entries(settings.DEFAULTS)
          .map(([k, [d, desc]]) => `  ${k.padEnd(17)} ${JSON.stringify(d).padEnd(24)} ${desc}\n`)
          .join(''),
    );
    return;
  }
  const scenarioArg = args.length > 0 && !args[0].startsWith('-') ? args.shift() : undefined;
  const scenario = resolveScenario(scenarioArg);
  const scenarioName = path.basename(scenario).replace(/\.ya?ml$/, '');

  const env = settings.applyDefaults({ ...process.env }, scenarioName);
  env.ARTILLERY_DISABLE_TELEMETRY = 'true';
  let s;
  try {
    s = settings.read(env);
  } catch (err) {
    return die(err.message);
  }
  // Derived values for the YAML: ARRIVALS for an arrivalCount phase (readonly-*: RATE x DURATION
  // users in all, so that RATE may be fractional, 16.67/s = 1000 users a minute), SEED as 0/1.
  env.ARRIVALS = String(Math.max(1, Math.round(s.rate * s.duration)));
  env.SEED = s.seed ? '1' : '0';
  // artillery splits an arrivalRate phase's rate into whole numbers per worker and fails an
  // assertion on a fractional one: say it here instead
  if (!Number.isInteger(s.rate) && /\barrivalRate:.*\$env\.RATE\b/.test(fs.readFileSync(scenario, 'utf8'))) {
    return die(`RATE must be a whole number for ${scenarioName} (an arrivalRate phase), got ${s.rate}`);
  }

  const extra = [...args];
  let reportPath = null;
  if (!extra.some((a) => a === '-o' || a === '--output' || a.startsWith('--output='))) {
    const reportsDir = path.join(here, 'reports');
    fs.mkdirSync(reportsDir, { recursive: true });
    reportPath = path.join(reportsDir, `${scenarioName}-${stamp()}.json`);
    extra.push('--output', reportPath);
  }

  const think = s.think.min === s.think.max ? `${s.think.min}s` : `${s.think.min}-${s.think.max}s`;
  const hot = s.hotKeys > 0 ? ` hot=${s.hotShare}%-on-${s.hotKeys}-keys` : '';
  process.stderr.write(
    `[loadtest] ${scenarioName}: target=${s.target} rate=${s.rate}/s duration=${s.duration}s ops/user=${s.ops} ` +
      `think=${think} keys=${s.keys}${hot} get:put:delete=${s.getWeight}:${s.putWeight}:${s.deleteWeight} ` +
      `seed=${s.seed ? 'yes' : 'no'} ensure: p99<${s.p99Ms}ms errors<=${s.maxErrorRate}%\n`,
  );

  const child = spawn(
    process.execPath,
    ['--require', path.join(here, 'no-telemetry.cjs'), artilleryBin(), 'run', ...extra, scenario],
    { env, stdio: 'inherit' },
  );
  const forward = (sig) => () => child.kill(sig);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, forward(sig));
  child.on('error', (err) => die(`cannot start artillery: ${err.message}`));
  child.on('exit', (code, signal) => {
    if (reportPath && fs.existsSync(reportPath)) {
      process.stderr.write(`[loadtest] report: ${path.relative(process.cwd(), reportPath)}\n`);
    }
    if (signal) {
      process.stderr.write(`[loadtest] artillery ended by ${signal}\n`);
      process.exit(128 + (require('node:os').constants.signals[signal] || 0));
    }
    process.stderr.write(`[loadtest] artillery exit code ${code}\n`);
    process.exit(code);
  });
}

main();
