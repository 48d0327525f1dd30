#!/usr/bin/env node
// Compiles contracts/*.sol with solc-js (standard JSON, fixed settings) into
// contracts/out/Subnet.json: { compiler, settings, abi, bytecode, deployedBytecode }.
//
//   node scripts/compile-contracts.js SOLC_DIR           writes contracts/out/Subnet.json
//   node scripts/compile-contracts.js SOLC_DIR --check   exits 1 when the checked-in file differs
//                                                        from a fresh compile
// SOLC_DIR is the npm `solc` package (scripts/install-chain-tools.sh prints its solc.js).
'use strict';
const fs = require('fs');
const path = require('path');

const [solcDir, mode] = process.argv.slice(2);
if (!solcDir) {
  console.error('usage: compile-contracts.js SOLC_DIR [--check]');
  process.exit(2);
}
const solc = require(path.resolve(solcDir));
const root = path.resolve(__dirname, '..', 'contracts');
const out = path.join(root, 'out', 'Subnet.json');
const MAIN = 'Subnet';

const sources = {};
for (const f of fs.readdirSync(root).filter((f) => f.endsWith('.sol')).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(root, f), 'utf8') };
}
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  metadata: { bytecodeHash: 'none' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};
const input = { language: 'Solidity', sources, settings };
const result = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (result.errors || []).filter((e) => e.severity === 'error');
for (const e of result.errors || []) console.error(e.formattedMessage || e.message);
if (errors.length) process.exit(1);
const c = result.contracts[`${MAIN}.sol`][MAIN];
const artifact = {
  compiler: `solc ${solc.version()}`,
  settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion, metadata: settings.metadata },
  abi: c.abi,
  bytecode: { object: '0x' + c.evm.bytecode.object },
  deployedBytecode: { object: '0x' + c.evm.deployedBytecode.object },
};
const text = JSON.stringify(artifact, null, 1) + '\n';
if (mode === '--check') {
  const have = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  if (have !== text) {
    console.error(`${path.relative(process.cwd(), out)} differs from a fresh compile of contracts/*.sol;`);
    console.error('run: node scripts/compile-contracts.js SOLC_DIR (after scripts/install-chain-tools.sh)');
    process.exit(1);
  }
  console.error(`${path.relative(process.cwd(), out)} matches a fresh compile (${artifact.compiler})`);
} else {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, text);
  console.error(`wrote ${path.relative(process.cwd(), out)} (${artifact.compiler}, ` +
    `${(c.evm.deployedBytecode.object.length / 2) | 0} bytes deployed)`);
}
