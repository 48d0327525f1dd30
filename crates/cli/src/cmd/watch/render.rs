//! Drawing the dashboard: a header with the window and phase, tabs, the selected pane and a
//! footer with the keys (or the last error).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Dataset, GraphType, Paragraph, Row, Sparkline, Table, Tabs,
};
use ratatui::Frame;

use super::{phase_at, Dashboard, Pane, Phase};
use crate::report::human;
use crate::run_view::{verdict_label, verdict_sync, IncidentKind};

pub fn draw(f: &mut Frame, d: &Dashboard) {
    let [head, tabs, body, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(header(d), head);
    let titles: Vec<Line> = Pane::ALL
        .iter()
        .enumerate()
        .map(|(i, p)| Line::from(format!("{} {}", i + 1, p.title())))
        .collect();
    let selected = Pane::ALL.iter().position(|p| *p == d.pane).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)),
        tabs,
    );
    match d.pane {
        Pane::Windows => windows(f, d, body),
        Pane::Peers => f.render_widget(peers(d), body),
        Pane::Events => f.render_widget(events(d), body),
    }
    let footer = match &d.error {
        Some(e) => Line::from(Span::styled(
            format!(" ! {e}"),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        None => Line::from(" tab/←/→ or 1-3: pane · ↑/↓ PgUp/PgDn Home/End: scroll · q: quit"),
    };
    f.render_widget(Paragraph::new(footer), foot);
}

/// Renders one frame into a `cols`×`rows` buffer and returns it as plain text lines.
pub fn to_text(d: &Dashboard, cols: u16, rows: u16) -> Result<String> {
    let backend = ratatui::backend::TestBackend::new(cols, rows);
    let mut term = ratatui::Terminal::new(backend).context("making a text frame")?;
    term.draw(|f| draw(f, d)).context("drawing a text frame")?;
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..rows {
        let line: String = (0..cols).map(|x| buf[(x, y)].symbol()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

fn secs(ms: u64) -> String {
    format!("{} s", ms.div_ceil(1000))
}

fn header(d: &Dashboard) -> Paragraph<'_> {
    let v = &d.view;
    let finished = !v.nodes.is_empty() && v.nodes.values().all(|n| n.finished.is_some());
    let phase = match &d.params {
        _ if finished => format!(
            "run finished (every node stopped; last window {})",
            v.windows
                .keys()
                .next_back()
                .map_or("—".into(), |w| w.to_string())
        ),
        Some(p) => match phase_at(p, d.now) {
            (_, Phase::Starting { in_ms }) => format!("window 0 starts in {}", secs(in_ms)),
            (w, Phase::Grace { left_ms }) => {
                format!(
                    "window {w} · gathering window {}'s uploads ({} left)",
                    w - 1,
                    secs(left_ms)
                )
            }
            (w, Phase::Training { left_ms }) => {
                format!("window {w} · training ({} left)", secs(left_ms))
            }
        },
        None => "window —".to_string(),
    };
    let chain = match &d.chain {
        Some(c) => format!(
            "chain height {} (window {}) · {} registered",
            c.height,
            c.window,
            c.rewards.len()
        ),
        None => "no chain".to_string(),
    };
    let (miners, validators) = v.role_counts();
    let last = match v
        .last_reported()
        .and_then(|w| Some((w, v.windows.get(&w)?)))
    {
        Some((w, f)) => format!(
            "last outer step: window {w}, {} aggregated {:?}, validation loss {}, replicas {}",
            f.peers.len(),
            f.peers,
            f.val_loss.map_or("—".into(), |l| format!("{l:.4}")),
            match f.agree() {
                Some(true) => format!("agree ({})", f.hashes.len()),
                Some(false) => "DIFFER".into(),
                None => "—".into(),
            }
        ),
        None => "no outer step reported yet".to_string(),
    };
    let bold = Style::new().add_modifier(Modifier::BOLD);
    Paragraph::new(vec![
        Line::from(vec![
            Span::styled(phase, bold.fg(Color::Cyan)),
            Span::raw(format!(
                " · {chain} · {miners} miners, {validators} validators"
            )),
        ]),
        Line::from(last),
    ])
    .block(Block::default().borders(Borders::ALL).title(Span::styled(
        format!(" covenant watch · {} ", d.title),
        bold,
    )))
}

fn windows(f: &mut Frame, d: &Dashboard, area: Rect) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let skip = d.scroll.get(Pane::Windows.title()).copied().unwrap_or(0);
    let v = &d.view;
    let rows: Vec<Row> = v
        .windows
        .iter()
        .rev()
        .skip(skip.min(v.windows.len().saturating_sub(1)))
        .map(|(w, f)| {
            Row::new(vec![
                Cell::from(w.to_string()),
                Cell::from(format!("{:?}", f.peers)),
                Cell::from(f.val_loss.map_or("—".into(), |l| format!("{l:.4}"))),
                Cell::from(
                    f.mean_train_loss()
                        .map_or("—".into(), |l| format!("{l:.4}")),
                ),
                Cell::from(human(f.bytes_up as f64) + "B"),
                Cell::from(
                    f.utilisation()
                        .map_or("—".into(), |u| format!("{:.0}%", 100.0 * u)),
                ),
                match f.agree() {
                    Some(true) => Cell::from("agree").style(Style::new().fg(Color::Green)),
                    Some(false) => Cell::from("DIFFER").style(Style::new().fg(Color::Red)),
                    None => Cell::from("—"),
                },
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Min(12),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "window",
            "aggregated",
            "val loss",
            "train",
            "uploaded",
            "util",
            "replicas",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(" Windows, newest first (util: the miners' inner ÷ (inner + outer + wait)) "),
    );
    f.render_widget(table, left);
    let [chart_area, bytes_area] =
        Layout::vertical([Constraint::Percentage(70), Constraint::Percentage(30)]).areas(right);
    loss_chart(f, d, chart_area);
    let mut bytes: Vec<u64> = v.windows.values().map(|f| f.bytes_up).collect();
    // The window in progress has no uploads yet.
    if bytes.last() == Some(&0) {
        bytes.pop();
    }
    let width = bytes_area.width.saturating_sub(2) as usize;
    let tail = &bytes[bytes.len().saturating_sub(width)..];
    f.render_widget(
        Sparkline::default()
            .data(tail)
            .style(Style::new().fg(Color::Yellow))
            .block(Block::default().borders(Borders::ALL).title(format!(
                " Bytes uploaded per window (last {}) ",
                tail.last().map_or("—".into(), |b| human(*b as f64) + "B")
            ))),
        bytes_area,
    );
}

fn loss_chart(f: &mut Frame, d: &Dashboard, area: Rect) {
    let v = &d.view;
    let val: Vec<(f64, f64)> = v
        .windows
        .iter()
        .filter_map(|(w, f)| Some((*w as f64, f.val_loss?)))
        .filter(|p| p.1.is_finite())
        .collect();
    let train: Vec<(f64, f64)> = v
        .windows
        .iter()
        .filter_map(|(w, f)| Some((*w as f64, f.mean_train_loss()?)))
        .filter(|p| p.1.is_finite())
        .collect();
    let all = val.iter().chain(&train);
    let (mut x1, mut y0, mut y1) = (1.0f64, f64::MAX, f64::MIN);
    for (x, y) in all {
        x1 = x1.max(*x);
        y0 = y0.min(*y);
        y1 = y1.max(*y);
    }
    if y0 > y1 {
        (y0, y1) = (0.0, 1.0);
    }
    let pad = ((y1 - y0) * 0.05).max(0.01);
    let (y0, y1) = (y0 - pad, y1 + pad);
    let datasets = vec![
        Dataset::default()
            .name("validation")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&val),
        Dataset::default()
            .name("train (miners' mean)")
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Magenta))
            .data(&train),
    ];
    let chart = Chart::new(datasets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" Loss by window "),
        )
        .x_axis(
            Axis::default()
                .bounds([0.0, x1])
                .labels(["0".to_string(), format!("{x1:.0}")]),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .labels([format!("{y0:.2}"), format!("{y1:.2}")]),
        );
    f.render_widget(chart, area);
}

fn peers(d: &Dashboard) -> Table<'_> {
    let v = &d.view;
    let latest = v.peers();
    let rewards = d.chain.as_ref().map(|c| &c.rewards);
    let mut uids: BTreeSet<u32> = latest.keys().copied().collect();
    uids.extend(rewards.into_iter().flat_map(|r| r.keys().copied()));
    let mut uids: Vec<u32> = uids.into_iter().collect();
    let weight = |u: &u32| latest.get(u).map_or(0.0, |p| p.line.weight);
    uids.sort_by(|a, b| weight(b).total_cmp(&weight(a)).then(a.cmp(b)));
    let skip = d.scroll.get(Pane::Peers.title()).copied().unwrap_or(0);
    let rows: Vec<Row> = uids
        .iter()
        .skip(skip.min(uids.len().saturating_sub(1)))
        .map(|uid| {
            let p = latest.get(uid);
            let num =
                |x: Option<f64>, prec: usize| x.map_or("—".into(), |x| format!("{x:.prec$}"));
            let reward = rewards.and_then(|r| r.get(uid)).copied();
            let mut row = Row::new(vec![
                Cell::from(uid.to_string()),
                Cell::from(v.name_of(*uid).unwrap_or("").to_string()),
                Cell::from(num(p.map(|p| p.line.score), 3)),
                Cell::from(num(p.map(|p| p.line.weight), 3)),
                Cell::from(num(p.and_then(|p| verdict_sync(&p.line.verdict)), 2)),
                Cell::from(p.map_or("—".into(), |p| verdict_label(&p.line.verdict))),
                Cell::from(num(reward, 3)),
                Cell::from(match p {
                    Some(p) if p.aggregated => "yes",
                    Some(_) => "no",
                    None => "—",
                }),
            ]);
            if p.is_some_and(|p| p.line.excluded) {
                row = row.style(Style::new().fg(Color::Red));
            }
            row
        })
        .collect();
    let title = match v.reference_validator() {
        Some(val) => format!(" Peers as {val} rated them; reward: the chain's consensus weight "),
        None => " Peers (no validator's report yet); reward: the chain's consensus weight ".into(),
    };
    Table::new(
        rows,
        [
            Constraint::Length(5),
            Constraint::Length(14),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(6),
            Constraint::Min(12),
            Constraint::Length(7),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new([
            "uid",
            "name",
            "score",
            "weight",
            "sync",
            "last verdict",
            "reward",
            "aggregated",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
    )
    .block(Block::default().borders(Borders::ALL).title(title))
}

fn events(d: &Dashboard) -> Table<'_> {
    let v = &d.view;
    let skip = d.scroll.get(Pane::Events.title()).copied().unwrap_or(0);
    let rows: Vec<Row> = v
        .incidents
        .iter()
        .rev()
        .skip(skip.min(v.incidents.len().saturating_sub(1)))
        .map(|i| {
            let style = match i.kind {
                IncidentKind::Join => Style::new().fg(Color::Green),
                IncidentKind::Fault => Style::new().fg(Color::Red),
            };
            Row::new(vec![
                Cell::from(i.window.map_or("—".into(), |w| w.to_string())),
                Cell::from(i.node.clone()),
                Cell::from(match i.kind {
                    IncidentKind::Join => "join",
                    IncidentKind::Fault => "fault",
                }),
                Cell::from(i.text.clone()),
            ])
            .style(style)
        })
        .collect();
    Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Length(14),
            Constraint::Length(6),
            Constraint::Min(20),
        ],
    )
    .header(
        Row::new(["window", "node", "kind", "what"])
            .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)),
    )
    .block(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" Joins and faults ({}) ", v.incidents.len())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use covenant_core::driver::events::EventLine;
    use covenant_core::driver::NodeEvent;

    #[test]
    fn a_frame_shows_the_window_table_and_the_peers() {
        let mut d = Dashboard::new("runs/x".into(), None);
        let ev = |name: &str, role: &str, event| EventLine {
            t: 1,
            role: role.into(),
            name: name.into(),
            event,
        };
        d.view.take(&ev(
            "validator-1",
            "validator",
            NodeEvent::Started { uid: 0 },
        ));
        d.view
            .take(&ev("miner-1", "miner", NodeEvent::Started { uid: 1 }));
        d.view.take(&ev(
            "validator-1",
            "validator",
            NodeEvent::OuterStep {
                window: 7,
                peers: vec![1],
                rejected: Default::default(),
                lr: 1.0,
                hash: "h".into(),
                source: covenant_core::driver::events::StepSource::Live,
                val_loss: Some(5.4321),
                stats: Default::default(),
            },
        ));
        let text = to_text(&d, 120, 30).unwrap();
        assert!(text.contains("covenant watch · runs/x"), "{text}");
        assert!(text.contains("5.4321"), "{text}");
        assert!(text.contains("1 Windows"), "{text}");
        d.pane = Pane::Peers;
        let text = to_text(&d, 120, 30).unwrap();
        assert!(text.contains("last verdict"), "{text}");
    }
}
