//! "The seed article checked": its four formulas evaluated live on editable inputs
//! ([`sim_core::seed::audit_with`]), each with the value as written, the printed claim, the
//! dimensional verdict, the problems and the corrected models; then its prose claims with
//! verdicts. Every number on this panel is computed by sim-core; the page only lays it out.

use sim_core::seed::{audit_with, Claim, FormulaAudit, ProblemKind, SeedInputs, Verdict};
use yew::prelude::*;

/// One editable input of the audit.
pub struct SeedField {
    /// "a1" … "a4" or "claims": which card shows it.
    pub section: &'static str,
    pub label: &'static str,
    pub get: fn(&SeedInputs) -> f64,
    pub set: fn(&mut SeedInputs, f64),
}

pub static SEED_FIELDS: &[SeedField] = &[
    SeedField {
        section: "A1",
        label: "n: connections",
        get: |i| i.a1.connections,
        set: |i, v| i.a1.connections = v,
    },
    SeedField {
        section: "A1",
        label: "r: Mb/s per connection",
        get: |i| i.a1.rate_per_connection_mbps,
        set: |i, v| i.a1.rate_per_connection_mbps = v,
    },
    SeedField {
        section: "A1",
        label: "C: bottleneck, Mb/s",
        get: |i| i.a1.bottleneck_mbps,
        set: |i, v| i.a1.bottleneck_mbps = v,
    },
    SeedField {
        section: "A1",
        label: "egress headroom (fraction)",
        get: |i| i.a1.egress_overhead,
        set: |i, v| i.a1.egress_overhead = v,
    },
    SeedField {
        section: "A2",
        label: "w: width, px",
        get: |i| i.a2.width_px,
        set: |i, v| i.a2.width_px = v,
    },
    SeedField {
        section: "A2",
        label: "h: height, lines",
        get: |i| i.a2.height_px,
        set: |i, v| i.a2.height_px = v,
    },
    SeedField {
        section: "A2",
        label: "q: \"quantization step\"",
        get: |i| i.a2.quant_step,
        set: |i, v| i.a2.quant_step = v,
    },
    SeedField {
        section: "A2",
        label: "f: frame rate, fps",
        get: |i| i.a2.fps,
        set: |i, v| i.a2.fps = v,
    },
    SeedField {
        section: "A2",
        label: "coded bits per pixel",
        get: |i| i.a2.coded_bits_per_pixel,
        set: |i, v| i.a2.coded_bits_per_pixel = v,
    },
    SeedField {
        section: "A2",
        label: "reference QP",
        get: |i| i.a2.reference_qp,
        set: |i, v| i.a2.reference_qp = v,
    },
    SeedField {
        section: "A3",
        label: "b: audio bitrate, kb/s",
        get: |i| i.a3.bitrate_kbps,
        set: |i, v| i.a3.bitrate_kbps = v,
    },
    SeedField {
        section: "A3",
        label: "s: sample rate, kHz",
        get: |i| i.a3.sample_rate_khz,
        set: |i, v| i.a3.sample_rate_khz = v,
    },
    SeedField {
        section: "A3",
        label: "L: duration, s",
        get: |i| i.a3.duration_s,
        set: |i, v| i.a3.duration_s = v,
    },
    SeedField {
        section: "A3",
        label: "PCM bits per sample",
        get: |i| i.a3.pcm_bits_per_sample,
        set: |i, v| i.a3.pcm_bits_per_sample = v,
    },
    SeedField {
        section: "A3",
        label: "channels",
        get: |i| i.a3.channels,
        set: |i, v| i.a3.channels = v,
    },
    SeedField {
        section: "A4",
        label: "R_v: video, Mb/s",
        get: |i| i.a4.video_mbps,
        set: |i, v| i.a4.video_mbps = v,
    },
    SeedField {
        section: "A4",
        label: "R_a: audio, Mb/s",
        get: |i| i.a4.audio_mbps,
        set: |i, v| i.a4.audio_mbps = v,
    },
    SeedField {
        section: "A4",
        label: "S: \"strategy\", Mb/s",
        get: |i| i.a4.strategy_mbps,
        set: |i, v| i.a4.strategy_mbps = v,
    },
    SeedField {
        section: "A4",
        label: "platform cap, kb/s",
        get: |i| i.a4.platform_cap_kbps,
        set: |i, v| i.a4.platform_cap_kbps = v,
    },
    SeedField {
        section: "A4",
        label: "RTMP chunk size, bytes",
        get: |i| i.a4.wire.chunk_size_bytes,
        set: |i, v| i.a4.wire.chunk_size_bytes = v,
    },
    SeedField {
        section: "claims",
        label: "frame rate, fps",
        get: |i| i.claims.fps,
        set: |i, v| i.claims.fps = v,
    },
    SeedField {
        section: "claims",
        label: "RTT, ms",
        get: |i| i.claims.rtt_ms,
        set: |i, v| i.claims.rtt_ms = v,
    },
    SeedField {
        section: "claims",
        label: "delayed ACK, ms",
        get: |i| i.claims.delayed_ack_ms,
        set: |i, v| i.claims.delayed_ack_ms = v,
    },
    SeedField {
        section: "claims",
        label: "RTMP set-up round trips",
        get: |i| i.claims.rtmp_setup_rtts,
        set: |i, v| i.claims.rtmp_setup_rtts = v,
    },
];

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Wrong => "badge bad",
        Verdict::Misleading => "badge warn",
        Verdict::PartlyTrue => "badge partly",
    }
}

fn problem_tag(k: ProblemKind) -> &'static str {
    match k {
        ProblemKind::Units => "units",
        ProblemKind::Arithmetic => "arithmetic",
        ProblemKind::Category => "category",
        ProblemKind::Model => "model",
        ProblemKind::Magnitude => "magnitude",
        ProblemKind::Input => "input",
    }
}

#[function_component(SeedPanel)]
pub fn seed_panel() -> Html {
    let inputs = use_state(SeedInputs::default);
    let audit = use_memo((*inputs).clone(), audit_with);
    let field_inputs = |section: &str| -> Html {
        SEED_FIELDS
            .iter()
            .enumerate()
            .filter(|(_, f)| f.section == section)
            .map(|(i, f)| {
                let v = (f.get)(&inputs);
                let inputs = inputs.clone();
                let oninput = Callback::from(move |e: InputEvent| {
                    let el: web_sys::HtmlInputElement = e.target_unchecked_into();
                    // Empty or unparsable → NaN: the audit then names the field it rejected.
                    let v = el.value().trim().parse::<f64>().unwrap_or(f64::NAN);
                    let mut next = (*inputs).clone();
                    (SEED_FIELDS[i].set)(&mut next, v);
                    inputs.set(next);
                });
                html! {
                    <label class="seed-input">
                        <span>{ f.label }</span>
                        <input type="number" step="any" value={ if v.is_finite() { v.to_string() } else { String::new() } } {oninput} />
                    </label>
                }
            })
            .collect()
    };
    let reset = {
        let inputs = inputs.clone();
        Callback::from(move |_| inputs.set(SeedInputs::default()))
    };
    let s = &audit.summary;
    html! {
        <section class="card seed" id="seed-article">
            <h2>{ "The seed article, checked" }</h2>
            <p class="lede">
                { format!("“{}” ({}). ", audit.article.title_zh, audit.article.title_en) }
                { &audit.article.note }
            </p>
            <p class="summary-line">
                { format!("{} formulas: {} reproduce their printed value, {} have consistent units, {} have problems. \
                           {} claims: {} wrong, {} misleading, {} partly true.",
                    s.formulas, s.formulas_reproducing, s.formulas_dimensionally_consistent, s.formulas_with_problems,
                    s.claims, s.claims_wrong, s.claims_misleading, s.claims_partly_true) }
                <button class="small" onclick={reset}>{ "reset to the article's numbers" }</button>
            </p>
            <div class="seed-grid">
                { for audit.formulas.iter().map(|f| formula_card(f, field_inputs(&f.id))) }
            </div>
            <h3>{ "The article's claims" }</h3>
            <div class="seed-inputs claims-inputs">{ field_inputs("claims") }</div>
            <div class="seed-grid">
                { for audit.claims.iter().map(claim_card) }
            </div>
            <details class="sources">
                <summary>{ "Sources" }</summary>
                <ul>{ for audit.sources.iter().map(|s| html!{ <li><b>{ &s.tag }</b>{ " " }{ &s.reference }</li> }) }</ul>
            </details>
        </section>
    }
}

fn formula_card(f: &FormulaAudit, inputs: Html) -> Html {
    let d = &f.dimensions;
    html! {
        <article class="seed-card" id={ format!("seed-{}", f.id.to_lowercase()) }>
            <header>
                <h3>{ format!("{}: {}", f.id, f.title) }</h3>
                <span class={ verdict_class(f.verdict) }>{ f.verdict.label() }</span>
            </header>
            <p class="formula"><code>{ &f.formula }</code>{ format!("  ({})", f.section) }</p>
            <p class="muted">{ &f.article_meaning }</p>
            <div class="seed-inputs">{ inputs }</div>
            <dl>
                <dt>{ "As written" }</dt>
                <dd class="as-written">{ &f.as_written.text }</dd>
                <dt>{ "The article prints" }</dt>
                <dd>
                    { &f.claimed.printed }
                    { " " }
                    if f.reproduces {
                        <span class="badge ok">{ "reproduces" }</span>
                    } else {
                        <span class="badge bad">{ format!("does not reproduce (as written ÷ printed = {})", sim_core::seed::fmt_sig(f.claim_ratio, 4)) }</span>
                    }
                </dd>
                if !f.coincidences.is_empty() {
                    <dt>{ "What was probably computed" }</dt>
                    <dd>
                        { for f.coincidences.iter().take(3).map(|c| html!{
                            <div>{ format!("{} = {} {} ({:+.2} % from the printed value)", c.expression, sim_core::seed::fmt_sig(c.value, 5), c.unit, c.relative_difference * 100.0) }</div>
                        }) }
                    </dd>
                }
                <dt>{ "Units" }</dt>
                <dd>
                    if d.consistent {
                        <span class="badge ok">{ "consistent" }</span>
                    } else {
                        <span class="badge bad">{ "inconsistent" }</span>
                    }
                    { format!(" derived: {}; the article says: {}. ", d.derived_text, d.expected_text) }
                    { &d.note }
                </dd>
            </dl>
            if !f.problems.is_empty() {
                <h4>{ "Problems" }</h4>
                <ul class="problems">
                    { for f.problems.iter().map(|p| html!{ <li><span class="tag">{ problem_tag(p.kind) }</span>{ " " }{ &p.text }</li> }) }
                </ul>
            }
            <h4>{ "Corrected" }</h4>
            { for f.corrected.iter().map(|c| html!{
                <div class="corrected">
                    <div><b>{ &c.title }</b>{ ": " }<code>{ &c.formula }</code>{ " = " }<b class="value">{ &c.value_text }</b></div>
                    <p>{ &c.explanation }</p>
                    if !c.extras.is_empty() {
                        <ul class="figures">
                            { for c.extras.iter().map(|x| html!{ <li>{ format!("{}: ", x.label) }<code>{ &x.formula }</code>{ " = " }<b>{ &x.text }</b></li> }) }
                        </ul>
                    }
                </div>
            }) }
        </article>
    }
}

fn claim_card(c: &Claim) -> Html {
    html! {
        <article class="seed-card claim" id={ format!("claim-{}", c.id) }>
            <header>
                <h3>{ format!("{} ({})", c.topic, c.section) }</h3>
                <span class={ verdict_class(c.verdict) }>{ c.verdict.label() }</span>
            </header>
            <blockquote>{ &c.translation_en }<br/><span class="muted zh">{ &c.original_zh }</span></blockquote>
            <p><b>{ "What is true: " }</b>{ &c.correct }</p>
            <p>{ &c.explanation }</p>
            if !c.figures.is_empty() {
                <ul class="figures">
                    { for c.figures.iter().map(|x| html!{ <li>{ format!("{}: ", x.label) }<code>{ &x.formula }</code>{ " = " }<b>{ &x.text }</b></li> }) }
                </ul>
            }
        </article>
    }
}
