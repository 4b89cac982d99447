// Unit tests sit beside the code (`*.test.ts`); cross-service integration tests live in test/.
// Types are checked by `tsc -p tsconfig.test.json` in `npm test`, so ts-jest only transpiles.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/{packages,services,tools}/*/src/**/*.test.ts', '<rootDir>/tools/src/**/*.test.ts', '<rootDir>/test/**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', isolatedModules: true }] },
  // Integration tests start real processes; one file at a time keeps 2 cores from thrashing.
  maxWorkers: 1,
  // etcd-server, iptables, chromium and prometheus from Debian, installed once when missing (see the file).
  globalSetup: '<rootDir>/test/global-setup.cjs',
  testTimeout: 60_000,
};
