//! The tmux harness (`siren_tests::tmux`) on a plain shell: the size it asks for, typing, reading
//! the screen, resizing, waiting for text to come and go, an exit status, and cleanup on drop.

use std::time::Duration;

use siren_tests::tmux::{Tmux, server_running};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_shell_in_tmux_can_be_typed_into_read_resized_and_is_killed_on_drop() {
    let script = r#"echo ready; stty size; read line; echo "got:$line"; read line; clear; stty size; read line; exit 3"#;
    let tmux = Tmux::start("sh", ["-c", script], &[("SIREN_HARNESS", "1")], 80, 24);
    let screen = tmux.wait_for("ready", WAIT);
    assert!(tmux.wait_for("24 80", WAIT).contains("24 80"), "{screen}");
    assert!(tmux.alive());
    assert_eq!(tmux.exit_status(), None);

    tmux.send_text("hello $SIREN_HARNESS");
    tmux.wait_for("hello $SIREN_HARNESS", WAIT);
    tmux.send_keys(&["Enter"]);
    tmux.wait_for("got:hello $SIREN_HARNESS", WAIT);
    // A text that never comes is reported as such, not waited for forever.
    assert!(
        tmux.try_wait(Duration::from_millis(300), |s| s.contains("never"))
            .is_none()
    );

    tmux.resize(100, 30);
    tmux.type_line("");
    let screen = tmux.wait_for("30 100", WAIT);
    tmux.wait_gone("ready", WAIT);
    assert_eq!(screen.lines().count(), 30, "{screen}");

    tmux.type_line("bye");
    assert!(tmux.try_wait(WAIT, |_| !tmux.alive()).is_some());
    assert_eq!(tmux.exit_status(), Some(3));

    let socket = tmux.socket();
    assert!(server_running(&socket));
    drop(tmux);
    assert!(!server_running(&socket));
}

#[test]
fn the_environment_given_reaches_the_command() {
    let tmux = Tmux::start(
        "sh",
        ["-c", "echo \"value=$SIREN_HARNESS_VALUE\"; sleep 60"],
        &[("SIREN_HARNESS_VALUE", "42")],
        40,
        10,
    );
    tmux.wait_for("value=42", WAIT);
}
