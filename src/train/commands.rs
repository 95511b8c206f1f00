//! Command polling between training steps: stop, pause (which blocks until resumed or
//! stopped) and resume. Commands are only read between steps, so a step is never cut in half.

use crate::run::{Command, Event};
use crossbeam_channel::{Receiver, Sender};

/// What the loop does after polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stopped by the user (or the commanding side went away while paused).
    Stop,
}

/// Reads every pending command. A pause sends `Paused`, then blocks until `Resume` (sending
/// `Resumed`) or `Stop`; a closed command channel while paused counts as a stop, since no
/// one is left to resume the run.
pub fn poll(commands: &Receiver<Command>, events: &Sender<Event>) -> Flow {
    while let Ok(cmd) = commands.try_recv() {
        match cmd {
            Command::Stop => return Flow::Stop,
            Command::Pause => {
                let _ = events.send(Event::Paused);
                loop {
                    match commands.recv() {
                        Ok(Command::Resume) => break,
                        Ok(Command::Stop) | Err(_) => return Flow::Stop,
                        Ok(Command::Pause) => {}
                    }
                }
                let _ = events.send(Event::Resumed);
            }
            Command::Resume => {}
        }
    }
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use super::{poll, Flow};
    use crate::run::{Command, Event};
    use crossbeam_channel::unbounded;

    #[test]
    fn no_commands_means_the_loop_goes_on() {
        let (_ctx, crx) = unbounded();
        let (etx, erx) = unbounded();
        assert_eq!(poll(&crx, &etx), Flow::Continue);
        assert!(erx.try_recv().is_err());
    }

    #[test]
    fn stop_ends_the_loop() {
        let (ctx, crx) = unbounded();
        let (etx, _erx) = unbounded();
        ctx.send(Command::Stop).unwrap();
        assert_eq!(poll(&crx, &etx), Flow::Stop);
    }

    #[test]
    fn a_pause_blocks_until_resume_and_reports_both() {
        let (ctx, crx) = unbounded();
        let (etx, erx) = unbounded();
        ctx.send(Command::Pause).unwrap();
        // A second pause while paused is ignored; resume lets the loop go on.
        ctx.send(Command::Pause).unwrap();
        ctx.send(Command::Resume).unwrap();
        assert_eq!(poll(&crx, &etx), Flow::Continue);
        assert!(matches!(erx.try_recv(), Ok(Event::Paused)));
        assert!(matches!(erx.try_recv(), Ok(Event::Resumed)));
        assert!(erx.try_recv().is_err());
    }

    #[test]
    fn a_pause_waits_for_a_command_sent_later() {
        let (ctx, crx) = unbounded();
        let (etx, _erx) = unbounded();
        ctx.send(Command::Pause).unwrap();
        let resumer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            ctx.send(Command::Resume).unwrap();
            ctx
        });
        assert_eq!(poll(&crx, &etx), Flow::Continue);
        drop(resumer.join());
    }

    #[test]
    fn stop_while_paused_or_a_closed_channel_ends_the_loop() {
        let (ctx, crx) = unbounded();
        let (etx, _erx) = unbounded();
        ctx.send(Command::Pause).unwrap();
        ctx.send(Command::Stop).unwrap();
        assert_eq!(poll(&crx, &etx), Flow::Stop);

        let (ctx, crx) = unbounded();
        ctx.send(Command::Pause).unwrap();
        drop(ctx);
        assert_eq!(poll(&crx, &etx), Flow::Stop);
    }
}
