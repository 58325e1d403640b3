"""The Model page's widgets, bound to a ModelSpec through session-state keys.

Widgets never take ``value=``: each key is filled from the spec once (or when a
preset or a block button replaces the spec), and the spec is read back from the
keys after every run. So presets fill the sliders, and sliders stay free to edit.
"""

from __future__ import annotations

from dataclasses import fields, replace

import streamlit as st

from dcnn_core.design import backbones, recipes
from dcnn_core.design import spec as model_spec
from dcnn_core.design.spec import ConvBlock, Head, ModelSpec
from ui import resources, state
from ui.glossary import HELP
from ui.text import plain

FILTER_CHOICES = [4, 6, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256]
UNIT_CHOICES = [8, 16, 32, 64, 84, 120, 128, 256, 512, 1024]
MAX_BLOCKS = 6
MAX_DENSE = 3
BLOCK_FIELDS = [f.name for f in fields(ConvBlock)]
BLOCK_BUTTONS = (  # (operation, icon, help) of the buttons in a block's title row
    ("up", ":material/arrow_upward:", "Move this block up"),
    ("duplicate", ":material/content_copy:", "Duplicate this block"),
    ("remove", ":material/delete:", "Remove this block"),
)


def _block_key(index: int, name: str) -> str:
    return f"model_b{index}_{name}"


def load_spec_into_widgets(spec: ModelSpec) -> None:
    """Write every widget key from ``spec`` (allowed before widgets render, or in a callback)."""
    st.session_state["model_block_count"] = len(spec.blocks)
    for index, block in enumerate(spec.blocks):
        for name in BLOCK_FIELDS:
            st.session_state[_block_key(index, name)] = getattr(block, name)
    head = spec.head
    st.session_state["model_head_pooling"] = head.pooling
    st.session_state["model_head_activation"] = head.activation
    st.session_state["model_head_dropout"] = float(head.dropout)
    st.session_state["model_dense_count"] = len(head.dense_units)
    for index, units in enumerate(head.dense_units):
        st.session_state[f"model_dense{index}_units"] = units
    st.session_state["model_base_name"] = spec.name.removesuffix(" (edited)")
    _load_backbone_into_widgets(spec.backbone)
    st.session_state[state.MODEL_SPEC] = spec


def ensure_widget_state() -> None:
    """Fill keys missing after the page was left (Streamlit drops unrendered widgets' state)."""
    required = ("model_block_count", "model_head_pooling", "model_dense_count", "model_head_dropout", FAMILY_KEY)
    if st.session_state.get(FAMILY_KEY) == PRETRAINED:  # the blocks' widgets are not drawn then
        required = (*required[1:], *(f"model_backbone_{name}" for name in BACKBONE_FIELDS))
    if any(key not in st.session_state for key in required):
        load_spec_into_widgets(state.model_spec_state())


def _fill_new_block(index: int) -> None:
    if _block_key(index, "filters") in st.session_state:
        return
    previous = _block_from_widgets(index - 1) if index > 0 else ConvBlock(filters=16)
    block = replace(previous, filters=min(256, previous.filters * 2)) if index > 0 else previous
    for name in BLOCK_FIELDS:
        st.session_state[_block_key(index, name)] = getattr(block, name)


def _block_from_widgets(index: int) -> ConvBlock:
    return ConvBlock(**{name: st.session_state[_block_key(index, name)] for name in BLOCK_FIELDS})


def _head_from_widgets() -> Head:
    units = [st.session_state.get(f"model_dense{i}_units", 128) for i in range(st.session_state["model_dense_count"])]
    return Head(
        pooling=st.session_state["model_head_pooling"],
        dense_units=units,
        activation=st.session_state["model_head_activation"],
        dropout=float(st.session_state["model_head_dropout"]),
    )


def spec_from_widgets() -> ModelSpec:
    head = _head_from_widgets()
    if st.session_state.get(FAMILY_KEY) == PRETRAINED:
        backbone = _backbone_from_widgets()
        return ModelSpec(name=backbones.default_spec(backbone.name, backbone.weights).name, blocks=[], head=head, backbone=backbone)
    blocks = [_block_from_widgets(i) for i in range(st.session_state["model_block_count"])]
    base = st.session_state.get("model_base_name", "Custom")
    spec = ModelSpec(name=base, rescale=True, blocks=blocks, head=head)
    if base in model_spec.PRESETS and spec.to_dict() != model_spec.PRESETS[base].to_dict():
        spec = replace(spec, name=f"{base} (edited)")
    return spec


# --- callbacks ------------------------------------------------------------------------------


def _apply_preset() -> None:
    load_spec_into_widgets(model_spec.preset(st.session_state["model_preset"]))


def _change_blocks(operation: str, index: int) -> None:
    spec = spec_from_widgets()
    blocks = list(spec.blocks)
    if operation == "remove":
        blocks.pop(index)
    elif operation == "up" and index > 0:
        blocks[index - 1], blocks[index] = blocks[index], blocks[index - 1]
    elif operation == "duplicate" and len(blocks) < MAX_BLOCKS:
        blocks.insert(index + 1, replace(blocks[index]))
    for stale in range(len(spec.blocks) + 1):
        for name in BLOCK_FIELDS:
            st.session_state.pop(_block_key(stale, name), None)
    load_spec_into_widgets(replace(spec, blocks=blocks))


# --- drawing --------------------------------------------------------------------------------


def _with_current(choices: list[int], key: str) -> list[int]:
    """The slider's choices plus the current value (a loaded spec may hold any allowed value)."""
    return sorted({*choices, st.session_state[key]})


def preset_picker() -> None:
    names = list(model_spec.PRESETS)
    if st.session_state.get("model_preset") not in names:
        base = st.session_state.get("model_base_name", "Simple CNN")
        st.session_state["model_preset"] = base if base in names else names[0]
    st.selectbox("Preset", names, key="model_preset", on_change=_apply_preset, help="Fills every slider below; edit freely afterwards.")
    _fit_offer()


def _fit_offer() -> None:
    """When the design cannot take this data set's image size, say so and offer the nearest design that fits."""
    dataset = resources.current_dataset()
    spec = spec_from_widgets()
    fitted = recipes.nearest_fitting(spec, dataset.input_shape, dataset.num_classes)
    if fitted is None:
        return
    height, width, _ = dataset.input_shape
    st.info(f"**{plain(spec.name)}** does not fit {height}×{width} images. The nearest design that fits: "
            f"{recipes.describe_change(spec, fitted)}.", icon=":material/fit_screen:")  # fmt: skip
    st.button("Use the design that fits", key="model_use_fitted", on_click=load_spec_into_widgets, args=(fitted,),
              icon=":material/auto_fix_high:")  # fmt: skip


def block_controls(index: int) -> None:
    """The widgets of one convolutional block."""
    _fill_new_block(index)
    key = lambda name: _block_key(index, name)  # noqa: E731
    with st.container(border=True):
        title, up, dup, remove = st.columns([6, 1, 1, 1], vertical_alignment="center")
        title.markdown(f"**Block {index + 1}**")
        for column, (operation, icon, help_text) in zip((up, dup, remove), BLOCK_BUTTONS, strict=True):
            column.button(
                "", icon=icon, key=f"model_b{index}_{operation}", help=help_text, on_click=_change_blocks,
                args=(operation, index), disabled=operation == "up" and index == 0,
            )  # fmt: skip
        a, b, c = st.columns(3)
        a.selectbox(
            "Kind",
            model_spec.BLOCK_KINDS,
            key=key("kind"),
            help="plain convolutions; residual adds a skip connection; separable is depthwise + pointwise (MobileNet)",
        )
        a.slider("Conv layers", 1, 6, key=key("conv_layers"), help=HELP["conv_layers"])
        a.select_slider("Filters", _with_current(FILTER_CHOICES, key("filters")), key=key("filters"), help=HELP["filters"])
        b.select_slider("Kernel size", _with_current([1, 3, 5, 7], key("kernel_size")), key=key("kernel_size"), help=HELP["kernel_size"])
        b.select_slider("Stride", _with_current([1, 2], key("stride")), key=key("stride"), help=HELP["stride"])
        b.selectbox("Padding", model_spec.PADDINGS, key=key("padding"), help=HELP["padding"])
        c.selectbox("Activation", model_spec.ACTIVATIONS, key=key("activation"), help=HELP["activation"])
        c.selectbox("Pooling", model_spec.POOLINGS, key=key("pooling"), help=HELP["pooling"])
        c.slider("Dropout", 0.0, 0.7, step=0.05, key=key("dropout"), help=HELP["dropout"])
        st.toggle("Batch normalisation", key=key("batch_norm"), help=HELP["batch_norm"])
        st.session_state.setdefault(key("pool_size"), 2)


def head_controls() -> None:
    with st.container(border=True):
        st.markdown("**Head**")
        a, b, c = st.columns(3)
        a.selectbox(
            "Feature maps → vector", model_spec.HEAD_POOLINGS, key="model_head_pooling", help=HELP["head_pooling"],
            format_func={"flatten": "Flatten", "global_average": "Global average pooling", "global_max": "Global max pooling"}.get,
        )  # fmt: skip
        b.slider("Dense layers", 0, MAX_DENSE, key="model_dense_count", help=HELP["dense_layers"])
        c.selectbox("Dense activation", model_spec.ACTIVATIONS, key="model_head_activation")
        for index in range(st.session_state["model_dense_count"]):
            st.session_state.setdefault(f"model_dense{index}_units", 128)
            units_key = f"model_dense{index}_units"
            b.select_slider(f"Units in dense layer {index + 1}", _with_current(UNIT_CHOICES, units_key), key=units_key, help=HELP["units"])
        c.slider("Dropout", 0.0, 0.7, step=0.05, key="model_head_dropout", help=HELP["dropout"])


# --- pretrained backbones -------------------------------------------------------------------

FAMILY_KEY = "model_family"
PRETRAINED = "Pretrained backbone"
FAMILIES = ("Design from scratch", PRETRAINED)
BACKBONE_FIELDS = ("name", "input_size", "weights", "fine_tune_layers", "fine_tune_epochs", "fine_tune_lr_factor")
WEIGHT_LABELS = {"imagenet": "ImageNet weights (transfer learning)", "random": "Random initialisation — not transfer learning"}
NOT_HERE = " (not available on this server)"


def _load_backbone_into_widgets(backbone: model_spec.Backbone | None) -> None:
    st.session_state[FAMILY_KEY] = FAMILIES[0] if backbone is None else PRETRAINED
    for name in BACKBONE_FIELDS:
        st.session_state[f"model_backbone_{name}"] = getattr(backbone or model_spec.Backbone(), name)


def _backbone_from_widgets() -> model_spec.Backbone:
    return model_spec.Backbone(**{name: st.session_state[f"model_backbone_{name}"] for name in BACKBONE_FIELDS})


def _apply_family() -> None:
    if st.session_state[FAMILY_KEY] == PRETRAINED:
        name = st.session_state.get("model_backbone_name", "mobilenet_v3_small")
        weights = "imagenet" if backbones.weights_status(name).available else "random"
        load_spec_into_widgets(backbones.default_spec(name, weights))
    else:
        load_spec_into_widgets(model_spec.preset(st.session_state.get("model_preset", "Simple CNN")))


def family_picker() -> None:
    if st.session_state.get(FAMILY_KEY) not in FAMILIES:
        _load_backbone_into_widgets(state.model_spec_state().backbone)
    st.radio("Start from", FAMILIES, key=FAMILY_KEY, on_change=_apply_family, horizontal=True)


def backbone_controls() -> None:
    """The backbone's choice, input size, weights and fine-tuning (phase 2)."""
    key = lambda name: f"model_backbone_{name}"  # noqa: E731
    with st.container(border=True):
        st.selectbox("Backbone", list(backbones.CATALOGUE), key=key("name"), format_func=lambda name: backbones.CATALOGUE[name].title)
        entry = backbones.info(st.session_state[key("name")])
        st.caption(f"{entry.description} {entry.parameters / 1e6:.1f} M parameters, trained on ImageNet (1.2 M photos, 1,000 classes).")
        sizes = sorted({*backbones.INPUT_SIZE_CHOICES, entry.default_input_size, st.session_state[key("input_size")]})
        st.select_slider(
            "Input size (pixels)", sizes, key=key("input_size"),
            help="Images are resized to this inside the model. The backbone was trained at "
            f"{entry.default_input_size} px; 96 or 128 px is several times cheaper on a CPU.",
        )  # fmt: skip
        _weights_choice(entry.name)
        a, b, c = st.columns(3)
        a.slider("Fine-tune the top N layers", 0, 40, key=key("fine_tune_layers"),
                 help="Phase 2 trains the top N backbone layers that have weights (batch norm stays frozen); 0: no phase 2.")  # fmt: skip
        b.slider("Fine-tuning epochs", 0, 20, key=key("fine_tune_epochs"), help="Phase 2's epochs, after the Train page's epochs.")
        factor_key = key("fine_tune_lr_factor")
        c.select_slider("Fine-tuning learning rate ×", sorted({0.01, 0.03, 0.1, 0.3, 1.0, st.session_state[factor_key]}), key=factor_key,
                        help="Phase 2's learning rate is the Train page's rate times this.")  # fmt: skip


def _weights_choice(name: str) -> None:
    """The weights radio. The core says whether ImageNet weights can be had here; when not, that option is shown as not
    available and random initialisation is the one choice — rather than a run that fails after Start. The organiser's
    instructions (file names, the environment variable) go into an expander, never into what everyone reads."""
    key = "model_backbone_weights"
    status = backbones.weights_status(name)
    if not status.available:
        st.session_state[key] = "random"
    label = lambda value: WEIGHT_LABELS[value] + (NOT_HERE if value == "imagenet" and not status.available else "")  # noqa: E731
    st.radio("Weights", list(WEIGHT_LABELS), key=key, format_func=label, horizontal=True, disabled=not status.available)
    if not status.available:
        st.warning(status.message, icon=":material/cloud_off:")
        with st.expander("For the organiser", icon=":material/admin_panel_settings:"):
            st.markdown(backbones.organiser_help(name))
    elif st.session_state[key] == "imagenet":
        st.caption(status.message)
