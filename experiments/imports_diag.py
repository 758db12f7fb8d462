"""Where the inner gradient comes from on an imported RULER task: needle sentence vs essay filler.
Run in a run's snapshot dir (/tmp/r15/NAME) with its overrides:
   PYTHONPATH=$PWD python experiments/imports_diag.py N key=value ...
Per split/length (first N records): weighting-net mass on the needle sentence vs the filler, mean CE
of filler tokens, and at inner step 0 (the LoRA init) the gradient norm of the needle part and of the
filler part, and the share of the needle gradient's magnitude whose sign the total gradient keeps
(what a sign-like Adam first step writes)."""
import collections, sys
import torch, torch.nn.functional as F
from perk.config import load_params
from perk.stages import common
from perk.stages.evaluate import _load_perk
from perk.meta import chunk_batch
from perk.meta.inner import token_losses
from perk.model import lora_parameters
torch.set_num_threads(1)
GATES = (0.0, 0.05, 0.2, 0.5)
n = int(sys.argv[1]); p = load_params("params.yaml", sys.argv[2:])
tok = common.tokenizer(p)
b = _load_perk(p, tok).eval()
lora = lora_parameters(b.lm); names = list(lora)
task = p.meta_train.task
rows = {}
for split in ("val", "test"):
    for r in common.rows(p, task, split):
        rows.setdefault((split, r["target_tokens"]), []).append(r)
for (split, L), rs in sorted(rows.items()):
    acc = collections.defaultdict(float)
    for r in rs[:n]:
        spans = [[] for _ in r["context"]]
        for sp in r["fact_spans"]:
            spans[sp["chunk"]].append((sp["start"], sp["end"]))
        ch = chunk_batch(tok, r["context"], spans)
        out = b.lm(input_ids=ch["input_ids"], output_hidden_states=True)
        ce = token_losses(out.logits, ch["input_ids"])
        w, _ = b.weight_net(out.hidden_states[-1][:, :-1])
        tm = (ch["loss_mask"][:, 1:] * ch["attention_mask"][:, 1:]).float()
        nm = ch["support_mask"][:, 1:].float() * tm; fm = tm - nm
        ntok = tm.sum()
        gn = torch.autograd.grad((w * ce * nm).sum() / ntok, list(lora.values()), retain_graph=True)
        gn = torch.cat([g.flatten() for g in gn])
        gf_full = torch.cat([g.flatten() for g in torch.autograd.grad((w * ce * fm).sum() / ntok, list(lora.values()), retain_graph=True)])
        for gate in GATES:
            wg = w * (w.detach() >= gate)
            gf = torch.autograd.grad((wg * ce * fm).sum() / ntok, list(lora.values()), retain_graph=True)
            gf = torch.cat([g.flatten() for g in gf])
            acc[f"sign_kept@{gate}"] += float(((torch.sign(gn + gf) == torch.sign(gn)).float() * gn.abs()).sum() / gn.abs().sum())
            acc[f"filler_kept@{gate}"] += float(((wg > 0).float() * fm).sum() / fm.sum())
        acc["chunks"] += ch["input_ids"].shape[0]; acc["w_needle"] += float((w * nm).sum() / nm.sum())
        acc["w_filler"] += float((w * fm).sum() / fm.sum()); acc["mass_needle"] += float((w * nm).sum() / (w * tm).sum())
        acc["ce_filler"] += float((ce * fm).sum() / fm.sum()); acc["ce_needle"] += float((ce * nm).sum() / nm.sum())
        acc["|g_needle|"] += float(gn.norm()); acc["|g_filler|"] += float(gf_full.norm())
    k = min(n, len(rs))
    print(f"{split} {L}: " + " ".join(f"{a}={v / k:.4g}" for a, v in acc.items()), flush=True)
