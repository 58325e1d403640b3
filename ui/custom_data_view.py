"""The "Your images" part of the Data page: import a set, review it before training, use or remove it.

User text (file, folder and class names) is shown only as plain text: in tables, in
Plotly labels (escaped by ``dcnn_core.results.plots``) and in messages escaped for Markdown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import PurePosixPath

import numpy as np
import streamlit as st

from dcnn_core.data import custom_data, custom_options, datasets
from dcnn_core.data.datasets import CUSTOM_KEY, DatasetChoice
from dcnn_core.results import plots
from dcnn_core.room.rules import Refused
from ui import resources, state
from ui.text import plain

LAST_REPORT = "custom_import_report"  # the latest ImportReport, shown until the next import or removal
WEBCAM_SHOTS = "custom_webcam_shots"  # class index → {"kept": {file id: (name, JPEG bytes)}, "seen": file ids}
IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "gif", "webp"]
MAX_BUILD_CLASSES = 10
MAX_WEBCAM_SHOTS_PER_CLASS = 30  # webcam pictures kept for one class: plenty to train on, and bounded in session memory
MAX_WEBCAM_SHOTS = 100  # webcam pictures kept in all (a JPEG is ~20-100 KB; they stay in session state until imported)
_log = logging.getLogger(__name__)


def draw_custom_data_section() -> None:
    """Import your own images (zip, uploads and webcam, or a server folder), then review the result."""
    st.session_state.setdefault(LAST_REPORT, None)
    st.session_state.setdefault(WEBCAM_SHOTS, {})
    options, name = _options()
    titles = ["Zip of class folders", "Build classes"]
    if resources.settings().allow_server_folders:
        titles.append("Server folder")
    tabs = st.tabs(titles)
    with tabs[0]:
        _zip_tab(options, name)
    with tabs[1]:
        _build_tab(options, name)
    if len(tabs) > 2:
        with tabs[2]:
            _folder_tab(options, name)
    _draw_report(st.session_state[LAST_REPORT])
    _draw_saved_sets()


# --- choosing what to import --------------------------------------------------------------------------


def _options() -> tuple[custom_options.ImportOptions, str]:
    settings = resources.settings()
    with st.expander("Import options", expanded=False):
        left, middle, right = st.columns(3)
        size = left.select_slider("Image size (pixels)", [16, 24, 32, 48, 64, 96, 128], value=32, key="data_custom_size")
        grayscale = left.toggle("Grayscale", value=False, key="data_custom_grayscale")
        test_fraction = middle.slider("Test images per class", 0.1, 0.5, 0.2, step=0.05, format="%.2f", key="data_custom_test_fraction")
        seed = middle.number_input("Seed", 0, 9999, 0, key="data_custom_seed")
        name = right.text_input(
            "Name of the set", max_chars=custom_data.MAX_SET_NAME, placeholder="from the file name", key="data_custom_name"
        )
    options = custom_options.ImportOptions(
        image_size=int(size), grayscale=bool(grayscale), test_fraction=float(test_fraction), seed=int(seed),
        max_megapixels=min(settings.max_upload_megapixels, custom_options.ImportOptions.max_megapixels),
        memory_budget_bytes=settings.custom_data_budget_mb * custom_options.MB,
    )  # fmt: skip
    return options, name.strip()


def _zip_tab(options: custom_options.ImportOptions, name: str) -> None:
    limit_mb = min(st.get_option("server.maxUploadSize"), options.max_archive_bytes // custom_options.MB)
    st.caption(
        f"One folder per class, images inside (PNG, JPEG, BMP, GIF or WebP), up to {limit_mb} MB: "
        "`cats/1.jpg`, `dogs/1.jpg`… One folder around them all is fine."
    )
    upload = st.file_uploader("Zip of class folders", type=["zip"], key="data_custom_zip")
    if st.button("Import", key="data_custom_import_zip", type="primary", disabled=upload is None):
        data, file_name = upload.getvalue(), upload.name
        _import(lambda: custom_data.import_zip(data, file_name, options), name or PurePosixPath(file_name).stem)


def _build_tab(options: custom_options.ImportOptions, name: str) -> None:
    st.caption("Name your classes, then give each some pictures: upload files or take them with your webcam.")
    text = st.text_area("Class names, one per line", "Class 1\nClass 2", key="data_custom_class_names")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) > MAX_BUILD_CLASSES:
        names = names[:MAX_BUILD_CLASSES]
        st.caption(f"Only the first {MAX_BUILD_CLASSES} classes are used here; for more, upload a zip.")
    duplicates = len(set(names)) < len(names)
    if duplicates:
        st.warning("Two classes have the same name; give each class its own name.")
    uploads = [_class_inputs(index, class_name) for index, class_name in enumerate(names)]
    if st.button("Import", key="data_custom_import_build", type="primary", disabled=len(names) < 2 or duplicates):
        classes = dict(zip(names, uploads, strict=True))
        _import(lambda: custom_data.build_from_uploads(classes, options, name or "My images"), name or "My images")


def _class_inputs(index: int, class_name: str) -> list[tuple[str, bytes]]:
    """One class's uploads and webcam pictures, as (file name, bytes)."""
    with st.container(border=True):
        st.text(class_name)
        uploads = st.file_uploader(
            f"Images for class {index + 1}", type=IMAGE_TYPES, accept_multiple_files=True, key=f"data_custom_files_{index}"
        )
        every_class = st.session_state[WEBCAM_SHOTS]
        shots = every_class.setdefault(index, {"kept": {}, "seen": set()})
        if st.toggle("Use the webcam", key=f"data_custom_webcam_on_{index}"):
            if webcam_cap(every_class, index) is None:  # at the cap the camera goes away until some are forgotten
                picture = st.camera_input("Take a picture (clear it to take the next)", key=f"data_custom_camera_{index}")
                if picture is not None:
                    keep_webcam_shot(every_class, index, picture.file_id, picture.getvalue())
            full = webcam_cap(every_class, index)
            if full:
                st.info(full, icon=":material/photo_camera:")
        if shots["kept"]:
            left, right = st.columns([3, 1], vertical_alignment="center")
            count = len(shots["kept"])
            left.caption(f"{count} webcam picture{'s' if count != 1 else ''} kept for this class.")
            right.button("Forget them", key=f"data_custom_clear_shots_{index}", on_click=shots["kept"].clear)
    return [(upload.name, upload.getvalue()) for upload in uploads or []] + list(shots["kept"].values())


def webcam_cap(every_class: dict[int, dict], index: int) -> str | None:
    """Why class ``index`` may not keep another webcam picture (one line for the user), or None while it may."""
    kept = len(every_class.get(index, {}).get("kept", {}))
    if kept >= MAX_WEBCAM_SHOTS_PER_CLASS:
        return f"This class has {kept} webcam pictures, the most kept for one class: press Forget them to take others."
    total = sum(len(shots["kept"]) for shots in every_class.values())
    if total >= MAX_WEBCAM_SHOTS:
        return f"You have {total} webcam pictures in all, the most kept: forget some to take others."
    return None


def keep_webcam_shot(every_class: dict[int, dict], index: int, file_id: str, data: bytes) -> bool:
    """Keep a new picture for class ``index`` (True) unless it was seen before or a cap is reached.

    Each picture counts once, even after "Forget them" (the camera still shows it) or when refused at the cap.
    """
    shots = every_class.setdefault(index, {"kept": {}, "seen": set()})
    if file_id in shots["seen"]:
        return False
    shots["seen"].add(file_id)
    if webcam_cap(every_class, index) is not None:
        return False
    shots["kept"][file_id] = (f"webcam-{len(shots['seen'])}.jpg", data)
    return True


def _folder_tab(options: custom_options.ImportOptions, name: str) -> None:
    st.caption("A folder on the computer running this app, with one sub-folder per class.")
    path = st.text_input("Folder", key="data_custom_folder", placeholder="/home/me/pictures/pets")
    if st.button("Import", key="data_custom_import_folder", type="primary", disabled=not path.strip()):
        _import(lambda: custom_data.import_folder(path.strip(), options, name or None), name or PurePosixPath(path.strip()).name)


# --- importing ------------------------------------------------------------------------------------


def _import(make_report: Callable[[], custom_options.ImportReport], raw_name: str) -> None:
    """Run an import; a refusal or any failure becomes one message, and the app keeps working."""
    st.session_state[LAST_REPORT] = None  # the previous import's banner would read as this one's outcome
    sets = st.session_state[state.CUSTOM_DATASETS]
    if custom_data.set_name(raw_name) not in sets:  # replacing a set of the same name is always allowed
        try:
            resources.engine().rules.check_image_sets(len(sets))
        except Refused as refusal:
            st.error(plain(str(refusal)), icon=":material/block:")
            return
    try:
        with st.spinner("Reading your images…"):
            report = make_report()
    except custom_options.ImportRefused as refusal:
        st.error(plain(str(refusal)), icon=":material/block:")
        if refusal.skipped:
            _skipped_table(refusal.skipped)
        return
    except ValueError as error:  # options out of range
        st.error(plain(str(error)))
        return
    except Exception as error:  # never a traceback on screen; the log keeps it for whoever runs the server
        _log.exception("custom data import failed")
        st.error(f"The import failed unexpectedly ({type(error).__name__}). Nothing was changed; try another file.")
        return
    _store(report, custom_data.set_name(raw_name))


def _store(report: custom_options.ImportReport, name: str) -> None:
    try:  # the server counts every own image set it holds against the room's memory for them
        resources.engine().share_dataset(report.dataset, DatasetChoice(CUSTOM_KEY, {"name": name}).to_dict())
    except Refused as refusal:
        st.error(plain(str(refusal)), icon=":material/block:")
        return
    st.session_state[state.CUSTOM_DATASETS][name] = report.dataset
    state.use_dataset(DatasetChoice(CUSTOM_KEY, {"name": name}))
    st.session_state[LAST_REPORT] = (name, report)


# --- reviewing what was imported -------------------------------------------------------------------------


def _draw_report(last: tuple[str, custom_options.ImportReport] | None) -> None:
    """Counts, what was skipped and why, and samples — before any training."""
    if last is None:
        return
    name, report = last
    dataset = report.dataset
    total = sum(report.counts.values())
    st.success(f"Imported **{plain(name)}**: {total:,} images in {dataset.num_classes} classes ({len(dataset.x_train):,} to train, "
               f"{len(dataset.x_test):,} to test). It is now the chosen data set; check it before you train.")  # fmt: skip
    for note in report.notes:
        st.info(plain(note), icon=":material/info:")
    left, right = st.columns(2)
    counts = np.array([report.counts[class_name] for class_name in dataset.class_names])
    left.plotly_chart(plots.class_counts_bar(counts, dataset.class_names), key="data_custom_counts")
    with right:
        if report.skipped:
            st.markdown(f"**{len(report.skipped)} files skipped**")
            _skipped_table(report.skipped)
        else:
            st.markdown("**No files were skipped.**")
    indices = datasets.sample_indices(dataset.y_train, 12, seed=0)
    titles = [dataset.class_names[label] for label in dataset.y_train[indices]]
    st.plotly_chart(plots.image_grid(dataset.x_train[indices], titles, columns=6), key="data_custom_samples")


def _skipped_table(skipped: list[tuple[str, str]]) -> None:
    st.dataframe({"File": [file for file, _ in skipped], "Why": [reason for _, reason in skipped]}, hide_index=True)


def _draw_saved_sets() -> None:
    sets: dict[str, datasets.Dataset] = st.session_state[state.CUSTOM_DATASETS]
    if not sets:
        return
    st.markdown("**Your image sets in this session**")
    chosen = state.dataset_choice()
    for index, (name, dataset) in enumerate(list(sets.items())):
        in_use = chosen.is_custom and chosen.options.get("name") == name
        left, middle, right = st.columns([3, 1, 1], vertical_alignment="center")
        left.text(
            f"{name}: {len(dataset.x_train) + len(dataset.x_test):,} images, {dataset.num_classes} classes"
            + (" (in use)" if in_use else "")
        )
        if middle.button("Use this set", key=f"data_custom_use_{index}", disabled=in_use):
            state.use_dataset(DatasetChoice(CUSTOM_KEY, {"name": name}))
            st.rerun()
        if right.button("Remove this set", key=f"data_custom_remove_{index}"):
            _remove(name)
            st.rerun()


def _remove(name: str) -> None:
    """Forget a set; runs already trained on it keep their own reference to its arrays."""
    st.session_state[state.CUSTOM_DATASETS].pop(name, None)
    last = st.session_state[LAST_REPORT]
    if last is not None and last[0] == name:
        st.session_state[LAST_REPORT] = None
