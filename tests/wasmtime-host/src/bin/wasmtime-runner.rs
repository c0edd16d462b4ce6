//! Runs the engine benchmark's wasm32-wasip1 build (benches/wasm-runner) inside Wasmtime, as
//! `benches/wasm-runner/run.mjs` runs it inside Node's V8, so `make bench` can set Wasmtime's
//! figures beside V8's and native ones.
//!
//!   wasmtime-runner wasm-runner.wasm [ARGS...]
//!
//! The program needs only a few WASI calls (its arguments, the clocks, random bytes for hash
//! seeds, writes to stdout and stderr, exit); they are served here, and any other import
//! (the proxy-wasm adapter's `env` functions, which the benchmark never calls, and the file
//! system) traps with its name if it is ever called. The module is compiled by Cranelift
//! with Wasmtime's default settings, as a Wasmtime-based proxy compiles a filter.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Engine, Linker, Module, Store};

const WASI: &str = "wasi_snapshot_preview1";
const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;

/// What the program sees of its process.
struct Process {
    args: Vec<Vec<u8>>,
    started: Instant,
    random: u64,
}

/// The program called `proc_exit`.
#[derive(Debug)]
struct Exit(i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Runs one WASI call on the program's memory: `Ok` is errno 0, `Err` the errno.
fn serve(
    caller: &mut Caller<'_, Process>,
    call: impl FnOnce(&mut [u8], &mut Process) -> Result<(), i32>,
) -> i32 {
    let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else {
        return ERRNO_FAULT;
    };
    let (mem, process) = memory.data_and_store_mut(caller);
    call(mem, process).err().unwrap_or(ERRNO_SUCCESS)
}

/// Writes `bytes` at the program's address `at`.
fn put(mem: &mut [u8], at: i32, bytes: &[u8]) -> Result<(), i32> {
    let at = usize::try_from(at).map_err(|_| ERRNO_FAULT)?;
    let slot = mem
        .get_mut(at..at.saturating_add(bytes.len()))
        .filter(|slot| slot.len() == bytes.len())
        .ok_or(ERRNO_FAULT)?;
    slot.copy_from_slice(bytes);
    Ok(())
}

fn get_u32(mem: &[u8], at: usize) -> Result<u32, i32> {
    let b = mem.get(at..at + 4).ok_or(ERRNO_FAULT)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn link(linker: &mut Linker<Process>) -> wasmtime::Result<()> {
    linker.func_wrap(
        WASI,
        "args_sizes_get",
        |mut caller: Caller<'_, Process>, count: i32, size: i32| {
            serve(&mut caller, |mem, process| {
                let bytes: usize = process.args.iter().map(|a| a.len() + 1).sum();
                put(mem, count, &(process.args.len() as u32).to_le_bytes())?;
                put(mem, size, &(bytes as u32).to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "args_get",
        |mut caller: Caller<'_, Process>, argv: i32, buf: i32| {
            serve(&mut caller, |mem, process| {
                let mut at = buf;
                for (i, arg) in process.args.iter().enumerate() {
                    put(mem, argv + 4 * i as i32, &(at as u32).to_le_bytes())?;
                    put(mem, at, &[arg.as_slice(), b"\0"].concat())?;
                    at += arg.len() as i32 + 1;
                }
                Ok(())
            })
        },
    )?;
    // No environment variables.
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut caller: Caller<'_, Process>, count: i32, size: i32| {
            serve(&mut caller, |mem, _| {
                put(mem, count, &0u32.to_le_bytes())?;
                put(mem, size, &0u32.to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(WASI, "environ_get", |_: i32, _: i32| ERRNO_SUCCESS)?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: Caller<'_, Process>, clock: i32, _precision: i64, out: i32| {
            serve(&mut caller, |mem, process| {
                let nanos = match clock {
                    0 => SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64),
                    1..=3 => process.started.elapsed().as_nanos() as u64,
                    _ => return Err(ERRNO_INVAL),
                };
                put(mem, out, &nanos.to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: Caller<'_, Process>, buf: i32, len: i32| {
            serve(&mut caller, |mem, process| {
                // Hash seeds only (the benchmark's data are seeded): xorshift is enough.
                let len = usize::try_from(len).map_err(|_| ERRNO_INVAL)?;
                let mut bytes = Vec::with_capacity(len + 8);
                while bytes.len() < len {
                    process.random ^= process.random << 13;
                    process.random ^= process.random >> 7;
                    process.random ^= process.random << 17;
                    bytes.extend(process.random.to_le_bytes());
                }
                bytes.truncate(len);
                put(mem, buf, &bytes)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: Caller<'_, Process>, fd: i32, iovs: i32, count: i32, written: i32| {
            serve(&mut caller, |mem, _| {
                let mut out = Vec::new();
                for i in 0..usize::try_from(count).map_err(|_| ERRNO_INVAL)? {
                    let at = usize::try_from(iovs).map_err(|_| ERRNO_FAULT)? + 8 * i;
                    let (ptr, len) = (get_u32(mem, at)? as usize, get_u32(mem, at + 4)? as usize);
                    out.extend_from_slice(mem.get(ptr..ptr + len).ok_or(ERRNO_FAULT)?);
                }
                let wrote = match fd {
                    1 => std::io::stdout()
                        .write_all(&out)
                        .and_then(|()| std::io::stdout().flush()),
                    2 => std::io::stderr().write_all(&out),
                    _ => return Err(ERRNO_BADF),
                };
                wrote.map_err(|_| ERRNO_BADF)?;
                put(mem, written, &(out.len() as u32).to_le_bytes())
            })
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(Exit(code)))
    })?;
    Ok(())
}

fn run(path: &str, args: Vec<Vec<u8>>) -> wasmtime::Result<i32> {
    let engine = Engine::default();
    let module = Module::from_file(&engine, path)?;
    let mut linker = Linker::new(&engine);
    link(&mut linker)?;
    linker.define_unknown_imports_as_traps(&module)?;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut store = Store::new(
        &engine,
        Process {
            args,
            started: Instant::now(),
            random: seed,
        },
    );
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(code)) => Ok(*code),
            None => Err(e),
        },
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let Some(path) = argv.next() else {
        eprintln!("usage: wasmtime-runner WASM [ARGS...]");
        return ExitCode::from(2);
    };
    let mut args = vec![b"wasm-runner".to_vec()];
    args.extend(argv.map(String::into_bytes));
    match run(&path, args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        Err(e) => {
            eprintln!("wasmtime-runner: {path}: {e:?}");
            ExitCode::FAILURE
        }
    }
}
