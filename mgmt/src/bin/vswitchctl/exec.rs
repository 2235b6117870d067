//! Commands that run something: `capture` (the daemon writes the file, we follow it)
//! and `run` (a command inside a new sandbox).

use super::*;

static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `capture`: the daemon writes the file; we poll its progress and stop it on Ctrl-C.
pub fn capture(
    c: &Client,
    port: String,
    file: PathBuf,
    count: Option<u64>,
    max_bytes: Option<u64>,
    json_out: bool,
) -> Res<()> {
    let file = std::path::absolute(&file)
        .map_err(|e| Failure::Usage(format!("invalid file {}: {e}", file.display())))?;
    // SAFETY: installing an async-signal-safe handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
    let req = api::CaptureStart {
        port,
        file: file.to_string_lossy().into_owned(),
        count,
        max_bytes,
    };
    let started: api::CaptureStarted = c.call("capture.start", &req)?;
    let id = api::CaptureId { id: started.id };
    while !INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        let st: api::CaptureState = c.call("capture.status", &id)?;
        if st.done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let v: api::CaptureStopped = c.call("capture.stop", &id)?;
    if json_out {
        print_json(&json!({
            "file": file,
            "frames": v.frames,
            "bytes": v.bytes,
            "reason": v.reason,
        }));
    } else {
        eprintln!("{} frames captured to {}", v.frames, file.display());
        match v.reason {
            Some(api::CaptureEnd::MaxBytes) => eprintln!(
                "the capture ended at its size bound ({} bytes); --max-bytes sets another",
                v.bytes
            ),
            Some(api::CaptureEnd::PortGone) => eprintln!("the capture ended: its port went away"),
            _ => {}
        }
    }
    Ok(())
}

/// `run`: create the sandbox, then run the command inside its namespace the way
/// `ip netns exec` does (its own mount namespace with the sandbox's resolv.conf).
pub fn run_cmd(c: &Client, r: RunArgs) -> Res<()> {
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("sb-{:08x}", rand::random::<u32>()));
    let _: api::SandboxCreated = c.call("sandbox.create", &r.flags.request(name.clone()))?;
    let result = exec_in(&name, &r.cmd, r.detach);
    if r.rm && !r.detach {
        let _: Res<String> = c.call(
            "sandbox.rm",
            &api::SandboxRm {
                name: name.clone(),
                force: true,
            },
        );
    }
    match result {
        Ok(code) if r.detach => {
            println!("{name}");
            let _ = code;
            Ok(())
        }
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code),
        Err(e) => Err(Failure::Refused(e)),
    }
}

pub fn exec_in(name: &str, cmd: &[String], detach: bool) -> Result<i32, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let ns = std::fs::File::open(mgmt::netns::path(name))
        .map_err(|e| format!("open namespace of {name}: {e}"))?;
    let resolv = mgmt::netns::resolv_conf_path(name);
    let resolv_c =
        std::ffi::CString::new(resolv.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let has_resolv = resolv.exists();
    let ns_fd = ns.as_raw_fd();
    let mut command = std::process::Command::new(&cmd[0]);
    command.args(&cmd[1..]);
    // SAFETY: the closure runs in the forked child before exec and only makes raw
    // syscalls (setns, unshare, mount, setsid) on values prepared before the fork.
    unsafe {
        command.pre_exec(move || {
            if libc::setns(ns_fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if has_resolv {
                let target = c"/etc/resolv.conf";
                // Best effort, as ip netns exec: a missing /etc/resolv.conf target is not fatal.
                libc::mount(
                    resolv_c.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
            }
            if detach {
                libc::setsid();
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("run {:?} in sandbox {name}: {e}", cmd[0]))?;
    if detach {
        return Ok(0);
    }
    let status = child
        .wait()
        .map_err(|e| format!("wait for {:?}: {e}", cmd[0]))?;
    Ok(status
        .code()
        .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
}
